"""ANY /proxy with x-target-url: allowlisted targets only."""

import pytest

from torrix import assert_openai_error, free_port


def _proxy(stack, key, target, method="POST", **kw):
    h = {"x-upstream-authorization": "Bearer up-secret-123"}
    if target is not None:
        h["x-target-url"] = target
    h.update(kw.pop("headers", {}))
    body = kw.pop("body", {"model": "gpt-4o-mini", "input": "hi"}
                  if method == "POST" else None)
    return stack.gw(method, "/proxy", key, body, headers=h, **kw)


@pytest.fixture
def allowed(stack):
    """Allows the mock as a proxy target; returns a key."""
    stack.api.ok("PATCH", "/settings",
                 {"proxy_targets": [stack.mock.url]})
    assert stack.api.ok("GET", "/settings")["proxy_targets"] == \
        [stack.mock.url]
    return stack.api.create_key()


def test_proxy_allowed_target(stack, allowed):
    target = stack.mock.url + "/some/path?q=1"
    stack.wait_status(lambda: _proxy(stack, allowed["key"], target), 200, 1.0)
    r = _proxy(stack, allowed["key"], target)
    assert r.json() == {"path": "/some/path?q=1", "method": "POST"}, r.text
    up = stack.mock.requests[-1]
    assert up.header("Authorization") == "Bearer up-secret-123"
    for h in ("x-target-url", "x-upstream-authorization", "x-api-key"):
        assert up.header(h) is None, h
    assert "sk-torrix" not in up.raw()
    assert up.json() == {"model": "gpt-4o-mini", "input": "hi"}


def test_proxy_get(stack, allowed):
    target = stack.mock.url + "/v2/things"
    stack.wait_status(lambda: _proxy(stack, allowed["key"], target, "GET"),
                      200, 1.0)
    assert stack.mock.requests[-1].method == "GET"
    assert stack.mock.requests[-1].path == "/v2/things"


def test_proxy_needs_key(stack, allowed):
    assert_openai_error(_proxy(stack, None, stack.mock.url + "/x"), 401)
    assert stack.mock.requests == []


def test_proxy_targets_not_allowed(stack, allowed):
    k = allowed["key"]
    stack.wait_status(lambda: _proxy(stack, k, stack.mock.url + "/x"), 200,
                      1.0)
    n = len(stack.mock.requests)
    other = "http://127.0.0.1:%d" % free_port()
    mp = stack.mock.port
    for target in (other + "/x",
                   "https://evil.example.com/x",
                   "http://127.0.0.1:%d@evil.com/x" % mp,
                   "https://127.0.0.1:%d/x" % mp,
                   "http://localhost:%d/x" % mp):
        assert_openai_error(_proxy(stack, k, target), 403)
    # malformed or ambiguous: refused either way
    for target in ("http://user:pw@127.0.0.1:%d/x" % mp,
                   "http://127.0.0.1:%d\\@evil.com/x" % mp,
                   "http://127.0.0.1:%d/x#frag" % mp,
                   "ftp://127.0.0.1:%d/x" % mp,
                   "/relative/path"):
        r = _proxy(stack, k, target)
        assert r.status_code in (400, 403), (target, r.status_code, r.text)
    assert len(stack.mock.requests) == n


def test_proxy_default_denies_mock(stack):
    k = stack.api.create_key()
    assert_openai_error(_proxy(stack, k["key"], stack.mock.url + "/x"), 403)
    assert stack.mock.requests == []


def test_proxy_missing_target_400(stack, allowed):
    assert_openai_error(_proxy(stack, allowed["key"], None), 400)
    assert stack.mock.requests == []
