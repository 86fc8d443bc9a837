"""The hash-chained audit log and its verification."""

import json

TIME_FIELDS = ("time", "ts", "at", "created_at", "timestamp")


def entries_for(api, obj_id):
    return [e for e in api.list_all("/audit") if obj_id in json.dumps(e)]


def find(entries, *words):
    for e in entries:
        if any(w in e["action"] for w in words):
            return e
    raise AssertionError("no audit entry with %s in %s" % (
        words, [e["action"] for e in entries]))


def test_audit_records_key_lifecycle(cp):
    api = cp.api
    k = api.create_key(name="before", allowed_models=["gpt-4o"])
    api.ok("PATCH", "/keys/" + k["id"], {"name": "after",
                                         "allowed_models": ["gpt-4o-mini"]})
    api.ok("POST", "/keys/%s/rotate" % k["id"], {"grace_seconds": 0})
    api.ok("DELETE", "/keys/" + k["id"], status=(200, 204))

    entries = entries_for(api, k["id"])
    for words in (("create",), ("update", "patch", "edit"), ("rotate",),
                  ("revoke", "delete")):
        e = find(entries, *words)
        assert e.get("actor"), e
        assert any(e.get(f) for f in TIME_FIELDS), e
        assert "diff" in e, e
    diff = json.dumps(find(entries, "update", "patch", "edit")["diff"])
    for s in ('"name"', '"before"', '"after"', '"allowed_models"',
              '"gpt-4o"', '"gpt-4o-mini"'):
        assert s in diff, (s, diff)
    assert "old" in diff and "new" in diff, diff
    text = json.dumps(api.list_all("/audit"))
    assert k["key"] not in text and "sk-torrix-" not in text
    seqs = [e["seq"] for e in api.list_all("/audit")]
    assert len(set(seqs)) == len(seqs)
    assert seqs in (sorted(seqs), sorted(seqs, reverse=True)), seqs
    page = api.ok("GET", "/audit?limit=2")
    assert len(page["data"]) == 2 and page["next_cursor"]


def test_failed_call_is_not_audited(cp):
    api = cp.api
    api.create_key()
    n = len(api.list_all("/audit"))
    assert api.post("/keys", {"name": 5}).status_code == 400
    assert api.patch("/keys/key_aaaaaaaaaaaaaaaaaaaa",
                     {"name": "x"}).status_code == 404
    assert len(api.list_all("/audit")) == n


def test_audit_verify_and_tamper(cp):
    api = cp.api
    for i in range(3):
        k = api.create_key(name="k%d" % i)
        api.ok("PATCH", "/keys/" + k["id"], {"name": "k%d-renamed" % i})
    v = api.ok("GET", "/audit/verify")
    assert v["ok"] is True, v
    assert api.get("/audit/verify", key=None).status_code == 401

    cp.stop_cp()
    r = cp.cp_cli("audit", "verify", "--data", cp.data)
    assert r.returncode == 0, r
    r = cp.cp_cli("audit", "tamper", "--data", cp.data, "--seq", 2)
    assert r.returncode == 0, r
    r = cp.cp_cli("audit", "verify", "--data", cp.data)
    assert r.returncode == 1, r

    cp.start_cp()
    v = api.ok("GET", "/audit/verify")
    assert v["ok"] is False and v["broken_at"] == 2, v
