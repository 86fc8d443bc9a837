"""The hash-chained audit log and its verification."""

import json

from torrix import find_fields

TIME_FIELDS = ("time", "ts", "at", "created_at", "timestamp")


def entries_for(api, obj_id):
    return [e for e in api.list_all("/audit") if obj_id in json.dumps(e)]


def find(entries, *words):
    for e in entries:
        if any(w in e["action"] for w in words):
            return e
    raise AssertionError("no audit entry with %s in %s" % (
        words, [e["action"] for e in entries]))


def old_new(diff, field):
    """(old, new) of a field in a diff: {"f": {"old":..,"new":..}},
    {"f": [old, new]} or [{"field": "f", "old":.., "new":..}]."""
    if isinstance(diff, list):
        d = [x for x in diff if x.get("field") == field]
        assert len(d) == 1, diff
        return d[0]["old"], d[0]["new"]
    v = diff[field]
    if isinstance(v, dict):
        return v["old"], v["new"]
    assert isinstance(v, list) and len(v) == 2, diff
    return tuple(v)


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
    diff = find(entries, "update", "patch", "edit")["diff"]
    assert old_new(diff, "name") == ("before", "after"), diff
    assert old_new(diff, "allowed_models") == (["gpt-4o"], ["gpt-4o-mini"])
    text = json.dumps(api.list_all("/audit"))
    assert k["key"] not in text
    assert not find_fields(json.loads(text), lambda f: "hash" in f and
                           f not in ("hash", "prev_hash")), text
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
