"""Provider settings: from the environment, overridden through the API."""

import time

from torrix import UPSTREAM_OPENAI_KEY, wait_until


def providers(api):
    j = api.ok("GET", "/providers")
    items = j["data"] if isinstance(j, dict) else j
    return {p["name"]: p for p in items}


def test_providers_from_env(cp):
    r = cp.api.get("/providers")
    assert r.status_code == 200
    assert "sk-upstream" not in r.text and '"api_key"' not in r.text
    ps = providers(cp.api)
    for name, url in (("openai", cp.mock.url + "/v1"),
                      ("anthropic", cp.mock.url)):
        p = ps[name]
        assert p["source"] == "env", p
        assert p["api_key_set"] is True, p
        assert p["base_url"].rstrip("/") == url, p
    one = cp.api.get("/providers/openai")
    assert one.status_code == 200 and "sk-upstream" not in one.text
    assert one.json()["name"] == "openai"
    assert cp.api.get("/providers/nope").status_code == 404


def test_put_provider_switches_upstream(stack, mock2):
    k = stack.api.create_key()
    assert stack.chat(k["key"]).status_code == 200
    assert stack.mock.requests[-1].header("Authorization") == \
        "Bearer " + UPSTREAM_OPENAI_KEY

    r = stack.api.put("/providers/openai",
                      {"base_url": mock2.url + "/v1",
                       "api_key": "sk-upstream-new"})
    assert r.status_code == 200, r.text
    assert "sk-upstream-new" not in r.text
    t0 = time.monotonic()
    wait_until(lambda: stack.chat(k["key"]).status_code == 200 and
               mock2.requests, 1.0, 0.02, "requests on mock2")
    assert time.monotonic() - t0 < 1.0
    up = mock2.requests[-1]
    assert up.path == "/v1/chat/completions"
    assert up.header("Authorization") == "Bearer sk-upstream-new"
    assert "sk-torrix" not in up.raw()
    n = len(stack.mock.requests)
    for _ in range(4):
        assert stack.chat(k["key"]).status_code == 200
    assert len(stack.mock.requests) == n and len(mock2.requests) == 5

    g = stack.api.get("/providers/openai")
    assert "sk-upstream" not in g.text and '"api_key"' not in g.text
    p = g.json()
    assert p["api_key_set"] is True and p["source"] != "env", p
    assert p["base_url"].rstrip("/") == mock2.url + "/v1"

    # DELETE falls back to the environment
    r = stack.api.delete("/providers/openai")
    assert r.status_code in (200, 204), r.text
    wait_until(lambda: stack.chat(k["key"]).status_code == 200 and
               len(stack.mock.requests) > n, 1.0, 0.02, "back on mock")
    assert providers(stack.api)["openai"]["source"] == "env"


def test_put_provider_survives_restart(cp, mock2):
    cp.api.ok("PUT", "/providers/anthropic", {"base_url": mock2.url,
                                              "api_key": "sk-upstream-x"})
    cp.stop_cp()
    cp.start_cp()
    p = providers(cp.api)["anthropic"]
    assert p["base_url"].rstrip("/") == mock2.url and p["api_key_set"]


def test_put_provider_bad_input(cp):
    for body in ({"base_url": 5}, {"base_url": "not a url"},
                 {"bogus": 1}):
        r = cp.api.put("/providers/openai", body)
        assert r.status_code == 400, (body, r.text)
    assert providers(cp.api)["openai"]["source"] == "env"
