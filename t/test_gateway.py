"""The data plane: key gate, allowlists, body checks, forwarding."""

import json

import pytest

from torrix import (UPSTREAM_ANTHROPIC_KEY, UPSTREAM_OPENAI_KEY,
                    assert_anthropic_error, assert_openai_error)

UNKNOWN_KEY = "sk-torrix-" + "Q" * 43


def assert_no_torrix_key(req, *secrets):
    raw = req.raw()
    assert "sk-torrix" not in raw, raw
    for s in secrets:
        assert s not in raw


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer garbage"},
    {"Authorization": "Bearer " + UNKNOWN_KEY},
    {"Authorization": "Basic c2stdG9ycml4Og=="},
])
def test_openai_bad_key_401(stack, headers):
    r = stack.chat(None, headers=headers)
    assert_openai_error(r, 401)
    assert stack.mock.requests == []


@pytest.mark.parametrize("key", [None, "garbage", UNKNOWN_KEY])
def test_anthropic_bad_key_401(stack, key):
    h = {"anthropic-version": "2023-06-01"}
    if key:
        h["x-api-key"] = key
    r = stack.gw("POST", "/v1/messages", None,
                 {"model": "claude-3-5-haiku-latest", "max_tokens": 5,
                  "messages": [{"role": "user", "content": "hi"}]},
                 headers=h)
    assert_anthropic_error(r, 401)
    assert stack.mock.requests == []


def test_openai_valid_key_forwarded(stack):
    k = stack.api.create_key()
    r = stack.chat(k["key"], headers={"x-torrix-name": "n1",
                                      "x-torrix-tags": "a=b"})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["object"] == "chat.completion" and j["choices"], j
    reqs = stack.mock.requests
    assert len(reqs) == 1, reqs
    up = reqs[0]
    assert up.method == "POST" and up.path == "/v1/chat/completions", up
    assert up.header("Authorization") == "Bearer " + UPSTREAM_OPENAI_KEY
    assert up.header("x-api-key") is None
    for h in ("x-torrix-name", "x-torrix-tags"):
        assert up.header(h) is None, h
    assert up.json()["model"] == "gpt-4o-mini"
    assert up.json()["messages"] == [{"role": "user", "content": "hi"}]
    assert_no_torrix_key(up, k["key"])


@pytest.mark.parametrize("path,body,obj", [
    ("/v1/completions", {"model": "gpt-3.5-turbo-instruct",
                         "prompt": "hi"}, "text_completion"),
    ("/v1/embeddings", {"model": "text-embedding-3-small",
                        "input": "hi"}, "list"),
    ("/v1/responses", {"model": "gpt-4o-mini", "input": "hi"}, "response"),
])
def test_other_openai_endpoints(stack, path, body, obj):
    k = stack.api.create_key()
    r = stack.gw("POST", path, k["key"], body)
    assert r.status_code == 200, r.text
    assert r.json()["object"] == obj
    up = stack.mock.requests[-1]
    assert up.path == path and up.json() == body, up
    assert up.header("Authorization") == "Bearer " + UPSTREAM_OPENAI_KEY
    assert_no_torrix_key(up, k["key"])


def test_anthropic_x_api_key(stack):
    k = stack.api.create_key()
    r = stack.messages(k["key"])
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "message"
    up = stack.mock.requests[-1]
    assert up.path == "/v1/messages", up
    assert up.header("x-api-key") == UPSTREAM_ANTHROPIC_KEY
    assert up.header("anthropic-version") == "2023-06-01"
    auth = up.header("Authorization")
    assert auth is None or k["key"] not in auth
    assert_no_torrix_key(up, k["key"])


def test_anthropic_bearer_key(stack):
    k = stack.api.create_key()
    r = stack.gw("POST", "/v1/messages", k["key"],
                 {"model": "claude-3-5-haiku-latest", "max_tokens": 5,
                  "messages": [{"role": "user", "content": "hi"}]},
                 headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 200, r.text
    assert stack.mock.requests[-1].header("x-api-key") == \
        UPSTREAM_ANTHROPIC_KEY
    assert_no_torrix_key(stack.mock.requests[-1], k["key"])


def test_read_key_403(stack):
    k = stack.api.create_key(access="read")
    assert_openai_error(stack.chat(k["key"]), 403)
    assert_anthropic_error(stack.messages(k["key"]), 403)
    assert stack.mock.requests == []


def test_model_allowlist(stack):
    k = stack.api.create_key(allowed_models=["gpt-4o*", "claude-3-opus"])
    assert stack.chat(k["key"], "gpt-4o-mini").status_code == 200
    assert stack.chat(k["key"], "gpt-4o").status_code == 200
    e = assert_openai_error(stack.chat(k["key"], "gpt-3.5-turbo"), 403)
    assert "gpt-3.5-turbo" in e["message"], e
    assert_openai_error(stack.chat(k["key"], "gpt-4"), 403)
    assert stack.messages(k["key"], "claude-3-opus").status_code == 200
    assert_anthropic_error(stack.messages(k["key"], "claude-3-haiku"), 403)
    models = [r.json()["model"] for r in stack.mock.requests]
    assert models == ["gpt-4o-mini", "gpt-4o", "claude-3-opus"], models


@pytest.mark.parametrize("allowed", ["*", ["*"]])
def test_allow_everything(stack, allowed):
    k = stack.api.create_key(allowed_models=allowed)
    for m in ("gpt-4o-mini", "o1", "some-local-model"):
        assert stack.chat(k["key"], m).status_code == 200, m


def test_missing_model_403_or_400(stack):
    k = stack.api.create_key(allowed_models=["gpt-4o"])
    r = stack.gw("POST", "/v1/chat/completions", k["key"],
                 {"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code in (400, 403), r.text
    assert_openai_error(r, r.status_code)
    assert stack.mock.requests == []


@pytest.mark.parametrize("body", [b"not json", b'{"model": "gpt-4o",',
                                  b"", b"[1,2]"])
def test_non_json_body_400(stack, body):
    k = stack.api.create_key()
    assert_openai_error(stack.gw("POST", "/v1/chat/completions", k["key"],
                                 body), 400)
    assert stack.mock.requests == []


def test_non_json_body_400_anthropic(stack):
    k = stack.api.create_key()
    assert_anthropic_error(stack.gw("POST", "/v1/messages", None, b"{oops",
                                    headers={"x-api-key": k["key"]}), 400)
    assert stack.mock.requests == []


def _big_body(size):
    return json.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "x" * size}]}).encode()


def test_body_limit_content_length_413(stack):
    k = stack.api.create_key()
    assert_openai_error(stack.gw("POST", "/v1/chat/completions", k["key"],
                                 _big_body(100 * 1024)), 413)
    assert_anthropic_error(stack.gw("POST", "/v1/messages", None,
                                    _big_body(100 * 1024),
                                    headers={"x-api-key": k["key"]}), 413)
    # just under the limit passes
    assert stack.gw("POST", "/v1/chat/completions", k["key"],
                    _big_body(60 * 1024)).status_code == 200
    assert len(stack.mock.requests) == 1


def test_body_limit_chunked_413(stack):
    k = stack.api.create_key()
    body = _big_body(100 * 1024)

    def gen(data=body):
        for i in range(0, len(data), 8192):
            yield data[i:i + 8192]

    r = stack.gw("POST", "/v1/chat/completions", k["key"], gen())
    assert_openai_error(r, 413)
    small = _big_body(1000)
    r = stack.gw("POST", "/v1/chat/completions", k["key"], gen(small))
    assert r.status_code == 200, r.text
    assert len(stack.mock.requests) == 1
    assert stack.mock.requests[0].body == small


def test_expired_key_401(stack):
    k = stack.api.create_key()
    assert stack.chat(k["key"]).status_code == 200
    stack.api.ok("PATCH", "/keys/" + k["id"],
                 {"expires_at": "2020-01-01T00:00:00Z"})
    stack.wait_status(lambda: stack.chat(k["key"]), 401)
    assert_openai_error(stack.chat(k["key"]), 401)
    assert stack.api.ok("GET", "/keys/" + k["id"])["status"] == "expired"


def test_expires_at_unix_seconds(stack):
    k = stack.api.create_key(expires_at=1000000000)
    assert_openai_error(stack.chat(k["key"]), 401)
    k2 = stack.api.create_key(expires_at=4102444800)      # 2100
    assert stack.chat(k2["key"]).status_code == 200


def test_key_expires_while_in_use(stack):
    """A key a worker has verified (and remembers until the next publish)
    still stops at its expires_at: time is checked per request."""
    import time
    exp = int(time.time()) + 3
    k = stack.api.create_key(expires_at=exp)
    while time.time() < exp - 1:
        assert stack.chat(k["key"]).status_code == 200
        time.sleep(0.05)
    while time.time() < exp + 0.2:
        time.sleep(0.05)
    for _ in range(4):                  # both workers
        assert_openai_error(stack.chat(k["key"]), 401)


def test_unknown_path_404(stack):
    k = stack.api.create_key()
    for path in ("/v1/foo", "/v1/chat/completions/x"):
        assert_openai_error(stack.gw("POST", path, k["key"],
                                     {"model": "gpt-4o"}), 404)
    assert stack.mock.requests == []


def test_models_lists_allowed(stack):
    k = stack.api.create_key(allowed_models=["gpt-4o", "gpt-4o-mini",
                                             "claude-3-opus"])
    r = stack.gw("GET", "/v1/models", k["key"])
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["object"] == "list", j
    assert all(m["object"] == "model" for m in j["data"]), j
    assert sorted(m["id"] for m in j["data"]) == \
        ["claude-3-opus", "gpt-4o", "gpt-4o-mini"], j
    assert_openai_error(stack.gw("GET", "/v1/models"), 401)


def test_upstream_keepalive(stack):
    """Requests to the provider reuse the upstream{} block's connections."""
    k = stack.api.create_key()
    for _ in range(8):
        assert stack.chat(k["key"]).status_code == 200
    peers = {r.peer for r in stack.mock.requests}
    assert len(stack.mock.requests) == 8
    assert len(peers) <= 2, peers       # at most one per worker
