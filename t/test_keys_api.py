"""The admin REST API: virtual keys, orgs, users, projects, bad input."""

import json

import pytest

from torrix import MISSING_ID, assert_api_error, find_fields, http


def _no_secret(text, obj, secret):
    assert secret not in text
    assert not find_fields(obj, lambda k: "hash" in k.lower()), text


def test_health_needs_no_auth(cp):
    r = http("GET", cp.cp_url + "/api/v1/health")
    assert r.status_code == 200
    j = r.json()
    assert j["status"] == "ok" and isinstance(j["schema"], int), j


def test_create_key(api):
    r = api.post("/keys", {"name": "ci", "allowed_models": ["gpt-4o*"],
                           "metadata": {"team": "infra"}})
    assert r.status_code == 201, r.text
    k = r.json()
    assert k["key"].startswith("sk-torrix-") and len(k["key"]) == 53, k
    assert k["id"].startswith("key_"), k
    assert k["key_prefix"] == k["key"][:14], k
    assert k["name"] == "ci" and k["status"] == "active", k
    assert k["allowed_models"] == ["gpt-4o*"], k
    assert k["metadata"] == {"team": "infra"}, k

    r = api.get("/keys/" + k["id"])
    assert r.status_code == 200, r.text
    g = r.json()
    _no_secret(r.text, g, k["key"])
    assert "key" not in g, g
    assert g["id"] == k["id"] and g["key_prefix"] == k["key_prefix"]
    assert g["name"] == "ci" and g["status"] == "active"

    r = api.get("/keys")
    assert r.status_code == 200
    _no_secret(r.text, r.json(), k["key"])
    assert [x["id"] for x in r.json()["data"]] == [k["id"]]


def test_two_keys_have_different_secrets(api):
    a, b = api.create_key(), api.create_key()
    assert a["key"] != b["key"] and a["id"] != b["id"]


def test_list_paging(api):
    ids = {api.create_key(name="k%d" % i)["id"] for i in range(5)}
    seen = []
    r = api.get("/keys?limit=2")
    assert r.status_code == 200, r.text
    page = r.json()
    assert len(page["data"]) == 2 and page["next_cursor"], page
    while True:
        seen += [k["id"] for k in page["data"]]
        if not page["next_cursor"]:
            break
        r = api.get("/keys?limit=2&cursor=" + page["next_cursor"])
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["data"]) <= 2
    assert len(seen) == 5 and set(seen) == ids, seen
    assert "next_cursor" in page and page["next_cursor"] is None


@pytest.mark.parametrize("limit", ["0", "1001", "abc"])
def test_list_bad_limit(api, limit):
    assert_api_error(api.get("/keys?limit=" + limit), 400)


def test_patch_key(api):
    k = api.create_key(name="before", allowed_models=["gpt-4o"])
    r = api.patch("/keys/" + k["id"], {"name": "after",
                                       "allowed_models": ["gpt-4o-mini"],
                                       "rpm": 60})
    assert r.status_code == 200, r.text
    _no_secret(r.text, r.json(), k["key"])
    g = api.ok("GET", "/keys/" + k["id"])
    assert g["name"] == "after" and g["allowed_models"] == ["gpt-4o-mini"]
    assert g["rpm"] == 60
    assert g["key_prefix"] == k["key_prefix"]


def test_revoke_key(api):
    k = api.create_key()
    r = api.delete("/keys/" + k["id"])
    assert r.status_code in (200, 204), r.text
    assert api.ok("GET", "/keys/" + k["id"])["status"] == "revoked"
    listed = api.ok("GET", "/keys?status=revoked")["data"]
    assert [x["id"] for x in listed] == [k["id"]]
    assert api.ok("GET", "/keys?status=active")["data"] == []


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_unknown_key_404(api, method):
    body = {"name": "x"} if method == "PATCH" else None
    assert_api_error(api.request(method, "/keys/" + MISSING_ID, body), 404)


def test_unknown_route_404(api):
    assert_api_error(api.get("/nothing-here"), 404)


def test_wrong_method_405(api):
    assert_api_error(api.put("/keys", {"name": "x"}), 405)


def _assert_nothing_written(api):
    assert api.ok("GET", "/keys")["data"] == []


def test_bad_json_400(api):
    assert_api_error(api.post("/keys", b'{"name": "x",'), 400)
    assert_api_error(api.post("/keys", b'\xff\xfe'), 400)
    assert_api_error(api.post("/keys", b'[1, 2]'), 400)
    _assert_nothing_written(api)


def test_unknown_field_400_names_it(api):
    e = assert_api_error(api.post("/keys", {"name": "x",
                                            "bogus_field": 1}), 400)
    assert "bogus_field" in e["message"], e
    _assert_nothing_written(api)
    k = api.create_key()
    e = assert_api_error(api.patch("/keys/" + k["id"],
                                   {"name": "y", "other_bogus": 2}), 400)
    assert "other_bogus" in e["message"], e
    assert api.ok("GET", "/keys/" + k["id"])["name"] == k["name"]


@pytest.mark.parametrize("body", [
    {"name": 123},
    {"name": "x", "allowed_models": 5},
    {"name": "x", "allowed_models": [1, 2]},
    {"name": "x", "access": "admin"},
    {"name": "x", "rpm": "many"},
    {"name": "x", "metadata": {"a": 1}},
    {"name": "x", "expires_at": "not a time"},
])
def test_wrong_type_or_value_400(api, body):
    assert_api_error(api.post("/keys", body), 400)
    _assert_nothing_written(api)


def test_oversized_body_413(api):
    big = json.dumps({"name": "x", "metadata": {"blob": "a" * (1 << 20)}})
    assert_api_error(api.post("/keys", big), 413)
    _assert_nothing_written(api)


@pytest.mark.parametrize("key", [None, "wrong", "sk-torrix-" + "A" * 43])
def test_admin_auth_401(api, key):
    assert_api_error(api.get("/keys", key=key), 401)
    assert_api_error(api.post("/keys", {"name": "x"}, key=key), 401)
    _assert_nothing_written(api)


def test_virtual_key_is_not_admin(api):
    k = api.create_key()
    assert_api_error(api.get("/keys", key=k["key"]), 401)


def test_api_through_nginx(stack):
    k = stack.gw_api.create_key()
    assert stack.api.ok("GET", "/keys/" + k["id"])["id"] == k["id"]


def _crud(api, kind, prefix, create, patch):
    obj = api.create(kind, **create)
    assert obj["id"].startswith(prefix), obj
    for f, v in create.items():
        assert obj[f] == v, (f, obj)
    got = api.ok("GET", "/%s/%s" % (kind, obj["id"]))
    assert got["id"] == obj["id"]
    assert obj["id"] in [x["id"] for x in api.list_all("/" + kind)]
    upd = api.ok("PATCH", "/%s/%s" % (kind, obj["id"]), patch)
    for f, v in patch.items():
        assert upd[f] == v, (f, upd)
        assert api.ok("GET", "/%s/%s" % (kind, obj["id"]))[f] == v
    assert_api_error(api.patch("/%s/%s" % (kind, obj["id"]),
                               {"no_such_field": 1}), 400)
    assert_api_error(api.get("/%s/%s_aaaaaaaaaaaaaaaaaaaa" % (
        kind, prefix.rstrip("_"))), 404)
    return obj


def test_orgs_users_projects_crud(api):
    org = _crud(api, "orgs", "org_", {"name": "Acme"}, {"name": "Acme Inc"})
    user = _crud(api, "users", "usr_",
                 {"email": "ada@example.com", "name": "Ada",
                  "org_id": org["id"]},
                 {"name": "Ada L.", "role": "admin"})
    prj = _crud(api, "projects", "prj_",
                {"slug": "chatbot", "name": "Chatbot", "org_id": org["id"]},
                {"name": "Chat bot", "rpm": 100})

    k = api.create_key(project_id=prj["id"], user_id=user["id"])
    assert k["project_id"] == prj["id"] and k["user_id"] == user["id"]
    assert k["org_id"] == org["id"], k      # defaults to the project's org
    listed = api.ok("GET", "/keys?project_id=" + prj["id"])["data"]
    assert [x["id"] for x in listed] == [k["id"]]
    assert api.ok("GET", "/keys?user_id=" + MISSING_ID)["data"] == []

    tmp_org = api.create("orgs", name="to delete")
    r = api.delete("/orgs/" + tmp_org["id"])
    assert r.status_code in (200, 204), r.text
    assert_api_error(api.get("/orgs/" + tmp_org["id"]), 404)


def test_duplicate_project_slug_409(api):
    api.create("projects", slug="app-one", name="one")
    assert_api_error(api.post("/projects", {"slug": "app-one",
                                            "name": "two"}), 409)
    assert len(api.list_all("/projects")) == 1
    p2 = api.create("projects", slug="app-two", name="two")
    assert_api_error(api.patch("/projects/" + p2["id"],
                               {"slug": "app-one"}), 409)


@pytest.mark.parametrize("slug", ["Upper", "with space", "a/b", ""])
def test_bad_project_slug_400(api, slug):
    assert_api_error(api.post("/projects", {"slug": slug, "name": "x"}), 400)


def test_unknown_references_400(api):
    assert_api_error(api.post("/keys", {"name": "x",
                                        "project_id": "prj_aaaaaaaaaaaaaaaaaaaa"}),
                     400)
    assert_api_error(api.post("/keys", {"name": "x",
                                        "user_id": "usr_aaaaaaaaaaaaaaaaaaaa"}),
                     400)
    assert_api_error(api.post("/projects", {
        "slug": "p", "name": "p", "org_id": "org_aaaaaaaaaaaaaaaaaaaa"}), 400)
    _assert_nothing_written(api)
    assert api.list_all("/projects") == []
