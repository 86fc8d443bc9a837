"""Metering through the real stack (issue 3): the exact tokens and cost of
a run for every provider shape and mode, JSON and SSE, include_usage
injection, streams written a byte at a time, cancelled streams, upstream
errors, unknown and free models, tags.

Every expected cost is computed here from GET /pricing/{model} with the
documented formula (torrix.expected_cost: integer micro-cents, one rounding
half up) and compared with the run's cost_usd to 1e-12 USD."""

import json
import math
import re
import socket

import pytest

from test_streaming import SLOW, assert_incremental, data_of, read_frames
from torrix import assert_cost, expected_cost, run_tokens, wait_until

OPENAI_USAGE = {"prompt_tokens": 1000, "completion_tokens": 300,
                "total_tokens": 1300,
                "prompt_tokens_details": {"cached_tokens": 400},
                "completion_tokens_details": {"reasoning_tokens": 120}}
OPENAI_TOKENS = {"input": 1000, "output": 300, "cache_read": 400,
                 "cache_write": 0, "reasoning": 120}

RESPONSES_USAGE = {"input_tokens": 2000, "output_tokens": 500,
                   "total_tokens": 2500,
                   "input_tokens_details": {"cached_tokens": 1500},
                   "output_tokens_details": {"reasoning_tokens": 200}}
RESPONSES_TOKENS = {"input": 2000, "output": 500, "cache_read": 1500,
                    "cache_write": 0, "reasoning": 200}

# Anthropic's input_tokens exclude cache reads and writes: Torrix' input
# counts them
ANTHROPIC_USAGE = {"input_tokens": 50, "cache_read_input_tokens": 1000,
                   "cache_creation_input_tokens": 200, "output_tokens": 12}
ANTHROPIC_TOKENS = {"input": 1250, "output": 12, "cache_read": 1000,
                    "cache_write": 200, "reasoning": 0}


def usage_hdr(usage, **more):
    h = {"x-mock-usage": json.dumps(usage)}
    h.update(more)
    return h


def check_run(stack, r, tokens, priced_model, **fields):
    """The run of response r: these exact tokens, and the cost of them at
    priced_model's price (None: cost 0).  Returns the run."""
    assert r.status_code == 200, r.text
    run = stack.run(r.headers["x-torrix-run-id"])
    assert run_tokens(run) == tokens, run
    if priced_model is None:
        assert_cost(run, 0)
    else:
        price = stack.price(priced_model)
        cost = expected_cost(price, tokens)
        assert cost > 0, (price, tokens)
        assert_cost(run, cost)
    assert run["flags"]["unpriced"] is False, run
    assert run["flags"]["estimated"] is False, run
    for k, v in fields.items():
        assert run[k] == v, (k, run)
    return run


def responses(stack, key, sse=False, **kw):
    body = {"model": kw.pop("model", "gpt-4o"), "input": "hi"}
    if sse:
        body["stream"] = True
    return stack.gw("POST", "/v1/responses", key, body, **kw)


# -- golden runs per provider and mode ---------------------------------------

def test_openai_chat_json(stack):
    k = stack.api.create_key()
    r = stack.chat(k["key"], "gpt-4o-mini", headers=usage_hdr(OPENAI_USAGE))
    run = check_run(stack, r, OPENAI_TOKENS, "gpt-4o-mini",
                    model="gpt-4o-mini", model_requested="gpt-4o-mini",
                    provider="openai", endpoint="chat.completions")
    assert run["flags"]["stream"] is False
    assert run["flags"]["usage_injected"] is False


def test_openai_actual_model_priced_first(stack):
    """The model that served (a dated name) is priced by its own entry; a
    served name without one falls back to the requested model."""
    k = stack.api.create_key()
    own, req = stack.price("gpt-4o-2024-05-13"), stack.price("gpt-4o")
    assert expected_cost(own, OPENAI_TOKENS) != \
        expected_cost(req, OPENAI_TOKENS), "test needs distinct prices"
    r = stack.chat(k["key"], "gpt-4o", headers=usage_hdr(
        OPENAI_USAGE, **{"x-mock-model": "gpt-4o-2024-05-13"}))
    check_run(stack, r, OPENAI_TOKENS, "gpt-4o-2024-05-13",
              model="gpt-4o-2024-05-13", model_requested="gpt-4o")
    # a dated name the table does not know: the requested model's price
    assert stack.api.get("/pricing/gpt-4o-2099-01-01").status_code == 404
    r = stack.chat(k["key"], "gpt-4o", headers=usage_hdr(
        OPENAI_USAGE, **{"x-mock-model": "gpt-4o-2099-01-01"}))
    check_run(stack, r, OPENAI_TOKENS, "gpt-4o",
              model="gpt-4o-2099-01-01", model_requested="gpt-4o")


def test_openai_chat_sse_client_usage(stack):
    """A client that asked for include_usage: its usage chunk arrives, and
    the run has its tokens, not flagged usage_injected."""
    k = stack.api.create_key()
    r = stack.chat(k["key"], "gpt-4o",
                   extra={"stream": True,
                          "stream_options": {"include_usage": True}},
                   headers=usage_hdr(OPENAI_USAGE), stream=True)
    with r:
        datas = [data_of(f) for _, f in read_frames(r)]
    assert datas[-1] == "[DONE]", datas
    chunks = [json.loads(d) for d in datas[:-1]]
    usage = [c for c in chunks if c.get("usage")]
    assert len(usage) == 1 and usage[0]["choices"] == [], chunks
    assert usage[0]["usage"] == OPENAI_USAGE
    run = check_run(stack, r, OPENAI_TOKENS, "gpt-4o", model="gpt-4o")
    assert run["flags"]["stream"] is True
    assert run["flags"]["usage_injected"] is False
    assert stack.mock.requests[-1].json()["stream_options"] == \
        {"include_usage": True}


def test_openai_completions_and_embeddings(stack):
    k = stack.api.create_key()
    r = stack.gw("POST", "/v1/embeddings", k["key"],
                 {"model": "text-embedding-3-small", "input": ["a", "b"]},
                 headers=usage_hdr({"prompt_tokens": 70000,
                                    "total_tokens": 70000}))
    assert len(r.json()["data"]) == 2
    check_run(stack, r, {"input": 70000, "output": 0, "cache_read": 0,
                         "cache_write": 0, "reasoning": 0},
              "text-embedding-3-small", endpoint="embeddings",
              model="text-embedding-3-small")
    r = stack.gw("POST", "/v1/completions", k["key"],
                 {"model": "gpt-3.5-turbo", "prompt": "hi"},
                 headers=usage_hdr({"prompt_tokens": 40,
                                    "completion_tokens": 9,
                                    "total_tokens": 49}))
    check_run(stack, r, {"input": 40, "output": 9, "cache_read": 0,
                         "cache_write": 0, "reasoning": 0},
              "gpt-3.5-turbo", model="gpt-3.5-turbo")


def test_openai_responses_json(stack):
    k = stack.api.create_key()
    r = responses(stack, k["key"], headers=usage_hdr(RESPONSES_USAGE))
    assert r.json()["object"] == "response"
    check_run(stack, r, RESPONSES_TOKENS, "gpt-4o", model="gpt-4o",
              endpoint="responses")


def test_openai_responses_sse(stack):
    """Usage from the response.completed event; response.created carries
    "usage": null before it."""
    k = stack.api.create_key()
    r = responses(stack, k["key"], sse=True, headers=usage_hdr(
        RESPONSES_USAGE, **SLOW), stream=True)
    with r:
        assert r.headers["content-type"].startswith("text/event-stream")
        frames = read_frames(r)
    events = [f.splitlines()[0] for _, f in frames]
    assert events[0] == "event: response.created", events
    assert events[-1] == "event: response.completed", events
    assert_incremental([t for t, f in frames if "output_text.delta" in f])
    run = check_run(stack, r, RESPONSES_TOKENS, "gpt-4o", model="gpt-4o")
    assert run["flags"]["stream"] is True


def test_anthropic_messages_json(stack):
    k = stack.api.create_key()
    model = "claude-3-5-sonnet-20241022"
    assert stack.price(model)["cache_write_per_mtok_usd"], \
        "test needs a model with a cache write price"
    r = stack.messages(k["key"], model, headers=usage_hdr(ANTHROPIC_USAGE))
    check_run(stack, r, ANTHROPIC_TOKENS, model, model=model,
              provider="anthropic", endpoint="messages")


def test_anthropic_messages_sse_cumulative_delta_once(stack):
    """message_start has the input and cache counts (and output_tokens 1);
    two message_delta events carry cumulative output 5 then 12: the run has
    12, not 1, 5, 13, 17 or 18."""
    k = stack.api.create_key()
    model = "claude-3-5-sonnet-20241022"
    r = stack.messages(k["key"], model, extra={"stream": True},
                       headers=usage_hdr(ANTHROPIC_USAGE,
                                         **{"x-mock-deltas": "5,12"}),
                       stream=True)
    with r:
        frames = read_frames(r)
    assert sum("event: message_delta" in f for _, f in frames) == 2
    run = check_run(stack, r, ANTHROPIC_TOKENS, model, model=model,
                    provider="anthropic")
    assert run["flags"]["stream"] is True


def test_anthropic_actual_model(stack):
    k = stack.api.create_key()
    r = stack.messages(k["key"], "claude-3-5-haiku-latest",
                       extra={"stream": True},
                       headers=usage_hdr(ANTHROPIC_USAGE, **{
                           "x-mock-model": "claude-3-5-haiku-20241022"}))
    check_run(stack, r, ANTHROPIC_TOKENS, "claude-3-5-haiku-20241022",
              model="claude-3-5-haiku-20241022",
              model_requested="claude-3-5-haiku-latest")


def test_ollama_model_costs_zero(stack):
    """An Ollama model through the OpenAI endpoint costs 0 and is not
    flagged unpriced."""
    k = stack.api.create_key()
    r = stack.chat(k["key"], "ollama/llama3.2",
                   headers=usage_hdr(OPENAI_USAGE))
    # the prefix names the provider; Ollama gets the model without it, on
    # its OpenAI-compatible path
    check_run(stack, r, OPENAI_TOKENS, None, model="llama3.2",
              model_requested="ollama/llama3.2", provider="ollama")
    up = stack.mock.requests[-1]
    assert up.path == "/v1/chat/completions", up
    assert up.json()["model"] == "llama3.2", up.json()


def test_provider_of_kind_ollama_costs_zero(stack):
    """An operator's provider of kind ollama (its own name and base URL,
    reached by prefix): every model it serves is free, even one with a
    price."""
    r = stack.api.put("/providers/gpu-box", {"kind": "ollama",
                                             "base_url": stack.mock.url})
    assert r.status_code in (200, 201), r.text
    k = stack.api.create_key()

    # the snapshot is republished within a second
    def zero_cost_run():
        r = stack.chat(k["key"], "gpu-box/gpt-4o",
                       headers=usage_hdr(OPENAI_USAGE))
        if r.status_code != 200:
            return None
        run = stack.run(r.headers["x-torrix-run-id"])
        return run if run["provider"] == "gpu-box" else None
    run = wait_until(zero_cost_run, 2, 0.05, "a run through gpu-box")[0]
    assert run["cost_usd"] == 0, run
    assert run["model"] == "gpt-4o", run
    assert run_tokens(run) == OPENAI_TOKENS
    assert run["flags"]["unpriced"] is False, run
    assert stack.mock.requests[-1].path == "/v1/chat/completions"


# -- include_usage injection -------------------------------------------------

def stream_no_usage_chunk(r):
    """Reads an OpenAI stream; asserts no usage chunk reached the client and
    it ends with [DONE]; returns the frames."""
    with r:
        assert r.status_code == 200, r.text
        frames = read_frames(r)
    datas = [data_of(f) for _, f in frames]
    assert datas[-1] == "[DONE]", datas
    for d in datas[:-1]:
        c = json.loads(d)       # every frame still whole, valid JSON
        assert "usage" not in c and c["choices"], d
    assert '"usage"' not in "".join(datas)
    return frames


def test_include_usage_injected(stack):
    """A streaming client without stream_options (or with include_usage
    false, or {}): the provider is asked for usage, the client does not see
    the usage chunk, frames still pass one by one, and the run has the
    tokens and usage_injected."""
    k = stack.api.create_key()
    for so in (None, {"include_usage": False}, {}):
        extra = {"stream": True}
        if so is not None:
            extra["stream_options"] = so
        hdr = usage_hdr(OPENAI_USAGE, **SLOW)
        r = stack.chat(k["key"], "gpt-4o", extra=extra, headers=hdr,
                       stream=True)
        frames = stream_no_usage_chunk(r)
        assert_incremental([t for t, f in frames if '"content"' in f])
        text = "".join(json.loads(data_of(f))["choices"][0]["delta"]
                       .get("content") or "" for _, f in frames[:-1])
        assert text == "tok0 tok1 tok2 tok3 tok4 ", text
        up = stack.mock.requests[-1].json()
        assert up["stream_options"]["include_usage"] is True, (so, up)
        assert up["messages"] == [{"role": "user", "content": "hi"}]
        run = check_run(stack, r, OPENAI_TOKENS, "gpt-4o")
        assert run["flags"]["usage_injected"] is True, (so, run)
        assert run["flags"]["stream"] is True


def test_no_injection_for_json(stack):
    k = stack.api.create_key()
    r = stack.chat(k["key"], headers=usage_hdr(OPENAI_USAGE))
    assert "stream_options" not in stack.mock.requests[-1].json()
    run = check_run(stack, r, OPENAI_TOKENS, "gpt-4o-mini")
    assert run["flags"]["usage_injected"] is False


# -- streams written in tiny pieces -------------------------------------------

def normalized(text):
    return re.sub(r'"created(_at)?": \d+', '"created": 0', text)


def test_stream_in_tiny_writes(stack):
    """The same SSE bodies sent in HTTP chunks of 1 and 7 bytes (each its
    own TCP write): the client gets the same bytes (no usage chunk where it
    was injected) and the runs the same tokens and cost as whole."""
    k = stack.api.create_key()
    cases = [
        ("chat injected", lambda h: stack.chat(
            k["key"], "gpt-4o", extra={"stream": True}, headers=h),
         OPENAI_USAGE, OPENAI_TOKENS, "gpt-4o"),
        ("chat include_usage", lambda h: stack.chat(
            k["key"], "gpt-4o", extra={
                "stream": True, "stream_options": {"include_usage": True}},
            headers=h), OPENAI_USAGE, OPENAI_TOKENS, "gpt-4o"),
        ("responses", lambda h: responses(stack, k["key"], True, headers=h),
         RESPONSES_USAGE, RESPONSES_TOKENS, "gpt-4o"),
        ("anthropic", lambda h: stack.messages(
            k["key"], "claude-3-5-sonnet-20241022", extra={"stream": True},
            headers=dict(h, **{"x-mock-deltas": "3,7,12"})),
         ANTHROPIC_USAGE, ANTHROPIC_TOKENS, "claude-3-5-sonnet-20241022"),
    ]
    for name, send, usage, tokens, model in cases:
        whole = send(usage_hdr(usage, **{"x-mock-chunks": "4"}))
        assert whole.status_code == 200, (name, whole.text)
        ref = stack.run(whole.headers["x-torrix-run-id"])
        assert run_tokens(ref) == tokens, (name, ref)
        for n in ("1", "7"):
            r = send(usage_hdr(usage, **{"x-mock-chunks": "4",
                                         "x-mock-write-bytes": n}))
            assert normalized(r.text) == normalized(whole.text), (name, n)
            run = check_run(stack, r, tokens, model)
            assert run["cost_usd"] == ref["cost_usd"], (name, n)
            assert run["flags"]["usage_injected"] == \
                ref["flags"]["usage_injected"], (name, n)
            if name == "chat injected":
                assert '"usage"' not in r.text, r.text


# -- cancelled streams ---------------------------------------------------------

def open_stream(stack, key, path, body, frames, headers=()):
    """Sends a streaming request on a raw socket, reads until `frames` data
    lines arrived, closes the socket; returns the run id."""
    raw = json.dumps(body).encode()
    hdrs = {"Host": "t", "Authorization": "Bearer " + key,
            "x-api-key": key, "anthropic-version": "2023-06-01",
            "Content-Type": "application/json",
            "Content-Length": str(len(raw)), "x-mock-chunks": "20",
            "x-mock-frame-delay-ms": "100"}
    hdrs.update(headers)
    req = "POST %s HTTP/1.1\r\n%s\r\n" % (path, "".join(
        "%s: %s\r\n" % kv for kv in hdrs.items()))
    sock = socket.create_connection(("127.0.0.1", stack.port), timeout=10)
    try:
        sock.sendall(req.encode() + raw)
        buf = b""
        while buf.count(b"data: ") < frames:
            d = sock.recv(65536)
            assert d, buf
            buf += d
    finally:
        sock.close()
    assert b" 200 OK" in buf.split(b"\r\n", 1)[0], buf
    m = re.search(rb"x-torrix-run-id: ([0-9a-f]+)", buf, re.I)
    assert m, buf
    return m.group(1).decode(), len(raw)


def check_cancelled(stack, run):
    f = run["flags"]
    assert f["cancelled"] is True and f["stream"] is True, run
    # the status line went out before the client left: the run keeps it
    # (nginx logs 200 too); 499 only when nothing was sent yet
    assert run["status"] in (200, 499), run
    assert run["upstream_status"] == 200, run
    # a cut stream keeps its bodies (as an error)
    assert run.get("response_body"), run


def test_cancelled_openai_stream_estimated(stack):
    """Client reads 2 frames of a slow 20-frame stream and leaves: the run
    is cancelled, billed from the delivered text (characters / 4,
    estimated) and the prompt size, at the model's price."""
    k = stack.api.create_key()
    body = {"model": "gpt-4o", "stream": True,
            "messages": [{"role": "user", "content": "hello there friend"}]}
    rid, blen = open_stream(stack, k["key"], "/v1/chat/completions", body, 2)
    run = stack.run(rid, timeout=10)
    check_cancelled(stack, run)
    assert run["flags"]["estimated"] is True, run
    assert run["flags"]["usage_injected"] is True, run
    # what passed the gateway: "tokN " per content frame
    delivered = run["response_body"].count('"content": "tok')
    assert 2 <= delivered < 20, run["response_body"]
    t = run_tokens(run)
    assert t["output"] == math.ceil(5 * delivered / 4), (delivered, run)
    assert t["input"] == math.ceil(blen / 4), (blen, run)
    cost = expected_cost(stack.price("gpt-4o"), t)
    assert cost > 0
    assert_cost(run, cost)
    assert run["flags"]["unpriced"] is False


def test_cancelled_responses_stream_estimated(stack):
    k = stack.api.create_key()
    rid, blen = open_stream(stack, k["key"], "/v1/responses",
                            {"model": "gpt-4o", "stream": True,
                             "input": "hello"}, 3)
    run = stack.run(rid, timeout=10)
    check_cancelled(stack, run)
    assert run["flags"]["estimated"] is True, run
    delivered = run["response_body"].count('"delta": "tok')
    assert 2 <= delivered < 20, run["response_body"]
    t = run_tokens(run)
    assert t["output"] == math.ceil(5 * delivered / 4), (delivered, run)
    assert_cost(run, expected_cost(stack.price("gpt-4o"), t))


def test_cancelled_anthropic_stream_bills_delivered_output(stack):
    """Anthropic's message_start carries usage with output_tokens 1, a
    placeholder: a stream cut after several text deltas must be billed at
    least for the delivered text, not for 1 output token."""
    k = stack.api.create_key()
    model = "claude-3-5-haiku-latest"
    rid, _ = open_stream(stack, k["key"], "/v1/messages",
                         {"model": model, "max_tokens": 100, "stream": True,
                          "messages": [{"role": "user", "content": "hi"}]},
                         6)
    run = stack.run(rid, timeout=10)
    check_cancelled(stack, run)
    delivered = run["response_body"].count('"text": "tok')
    assert delivered >= 4, run["response_body"]
    t = run_tokens(run)
    assert t["input"] == 11, run            # message_start's input_tokens
    assert t["output"] >= math.ceil(5 * delivered / 4), \
        ("cancelled Anthropic stream billed %d output tokens for %d "
         "delivered characters" % (t["output"], 5 * delivered), run)
    assert_cost(run, expected_cost(stack.price(model), t))


# -- errors, unknown models ----------------------------------------------------

def test_upstream_500_is_a_run_with_whole_bodies(stack):
    stack.api.ok("PATCH", "/settings", {"sample_rate": 0})
    k = stack.api.create_key()
    # long enough that a sampled-size cut would show
    prompt = "x" * 5000
    body = {"model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": prompt}]}

    def fail():
        return stack.gw("POST", "/v1/chat/completions", k["key"], body,
                        headers={"x-mock-status": "500"})
    r = fail()
    assert r.status_code == 500, r.text
    assert r.json()["error"]["code"] == "mock_500"     # passed through
    run = stack.run(r.headers["x-torrix-run-id"])
    assert run["status"] == 500 and run["upstream_status"] == 500, run
    assert run["flags"]["error"] is True, run
    assert run["flags"]["sampled"] is False, run
    assert run["flags"]["truncated"] is False, run
    assert json.loads(run["request_body"]) == body
    assert run["response_body"] == r.text
    assert run["cost_usd"] == 0, run
    errs = stack.api.ok("GET", "/errors")["data"]
    e = [x for x in errs if x["run_id"] == run["id"]]
    assert e and e[0]["status"] == 500 and e[0]["model"] == "gpt-4o-mini", \
        errs


def test_unknown_model_unpriced(stack):
    k = stack.api.create_key()
    r = stack.chat(k["key"], "gpt-unknown-x",
                   headers=usage_hdr(OPENAI_USAGE))
    assert r.status_code == 200
    run = stack.run(r.headers["x-torrix-run-id"])
    assert run_tokens(run) == OPENAI_TOKENS, run
    assert run["cost_usd"] == 0, run
    assert run["flags"]["unpriced"] is True, run
    # a priced model right after: not flagged
    r = stack.chat(k["key"], "gpt-4o-mini", headers=usage_hdr(OPENAI_USAGE))
    check_run(stack, r, OPENAI_TOKENS, "gpt-4o-mini")


# -- run fields, tags ----------------------------------------------------------

def test_run_fields_and_tags(stack):
    """x-torrix-tags merged over the key's metadata (request wins),
    x-torrix-name, x-torrix-user; spend by tag has the request's tags."""
    k = stack.api.create_key(metadata={"team": "k", "cost_center": "cc1"})
    r = stack.chat(k["key"], headers=dict(usage_hdr(OPENAI_USAGE), **{
        "x-torrix-tags": "team=a,env=prod", "x-torrix-name": "nightly-eval",
        "x-torrix-user": "end-user-7"}))
    run = check_run(stack, r, OPENAI_TOKENS, "gpt-4o-mini",
                    name="nightly-eval", end_user="end-user-7")
    assert run["tags"] == {"team": "a", "env": "prod", "cost_center": "cc1"}
    assert run["ttft_ms"] > 0 and run["latency_ms"] >= run["ttft_ms"], run
    cost = run["cost_usd"]

    def by_tag():
        d = {x["id"]: x for x in
             stack.api.ok("GET", "/spend?by=tag")["data"]}
        return d if "env=prod" in d else None
    d = wait_until(by_tag, 5, 0.05, "spend by tag")[0]
    assert abs(d["env=prod"]["cost_usd"] - cost) < 1e-12, d
    assert d["env=prod"]["requests"] == 1
    assert "team=a" in d and "cost_center=cc1" in d and "team=k" not in d, d
    # the run filter by tag
    assert [x["id"] for x in stack.runs(tag="env=prod")] == [run["id"]]
    assert stack.runs(tag="team=k") == []


def test_include_usage_injected_body_shapes(stack):
    """Injection works on bodies as clients really write them: null
    stream_options, keys in any order, pretty-printed, a prompt that
    mentions stream_options, include_usage false given twice."""
    k = stack.api.create_key()
    msg = '"messages":[{"role":"user","content":"hi"}]'
    bodies = [
        '{"model":"gpt-4o","stream":true,"stream_options":null,%s}' % msg,
        '{"stream_options":{"include_usage":false},"model":"gpt-4o",%s,'
        '"stream":true}' % msg,
        '{\n  "model": "gpt-4o",\n  "stream" : true,\n  "messages": [{"role":'
        '"user","content":"stream_options {\\"include_usage\\": false}"}]\n}',
        '{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":'
        'false},"stream_options":{"include_usage":false},%s}' % msg,
    ]
    for b in bodies:
        r = stack.gw("POST", "/v1/chat/completions", k["key"], b,
                     headers=usage_hdr(OPENAI_USAGE), stream=True)
        stream_no_usage_chunk(r)
        up = stack.mock.requests[-1].json()     # duplicate keys: last wins
        assert up["stream_options"]["include_usage"] is True, (b, up)
        assert up["messages"] == json.loads(b)["messages"]
        run = check_run(stack, r, OPENAI_TOKENS, "gpt-4o")
        assert run["flags"]["usage_injected"] is True, (b, run)
