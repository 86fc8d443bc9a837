"""Routing through the gateway: router rules, agent tiers, provider choice,
/v1/models, fallback chains and strategies, against the real nginx module,
torrix-cp and the mock provider."""

import json
import time

import pytest

from torrix import (UPSTREAM_ANTHROPIC_KEY, assert_anthropic_error,
                    assert_openai_error, free_port, run_tokens, wait_until)


EFFECTIVE = 1.2     # seconds: an API write is enforced within 1 s


def upstream_models(stack):
    """The models the mock was asked for, in order."""
    return [r.json().get("model") for r in stack.mock.requests
            if r.method == "POST"]


def attempts(run):
    return [(a["model"], a["provider"], a["error"]) for a in run["attempts"]]


def served_model(stack, key, model, want, **kw):
    """Retries until the gateway serves `model` with `want` (the snapshot
    is republished within a second); returns the last response."""
    def once():
        r = stack.chat(key, model, **kw)
        return r if r.status_code == 200 and r.json()["model"] == want \
            else None
    return wait_until(once, 3, 0.05, "%s served by %s" % (model, want))[0]


# -- router rules ----------------------------------------------------------

def test_rule_rewrites_model(stack):
    """A rule rewrites the body's model; the client sees the model that
    served it; the run has requested model, actual model, provider and the
    attempt."""
    stack.api.create("routes", pattern="fast", target="gpt-4o-mini")
    k = stack.api.create_key(allowed_models=["fast"])

    r = served_model(stack, k["key"], "fast", "gpt-4o-mini")
    assert upstream_models(stack)[-1] == "gpt-4o-mini"
    up = stack.mock.requests[-1]
    body = up.json()
    assert body["messages"] == [{"role": "user", "content": "hi"}], body

    run = stack.run(r.headers["x-torrix-run-id"])
    assert run["model_requested"] == "fast", run
    assert run["model"] == "gpt-4o-mini", run
    assert run["provider"] == "openai", run
    assert attempts(run) == [("gpt-4o-mini", "openai", None)], run
    assert run["attempts"][0]["status"] == 200, run

    # the allowlist names what the client may ask for, not the target
    assert_openai_error(stack.chat(k["key"], "gpt-4o-mini"), 403)


@pytest.mark.parametrize("size", [200, 4000, 4200, 60000])
def test_rule_rewrite_body_byte_for_byte(stack, size):
    """A rewritten body reaches the provider as the client's bytes with
    only the model's value changed, its Content-Length right: small bodies
    go as one copied buffer, larger ones (past 4 KB) as a chain over the
    client's body; both paths, and the sizes around the switch."""
    stack.api.create("routes", pattern="fast", target="gpt-4o-mini")
    k = stack.api.create_key(allowed_models=["fast"])
    pad = "x" * max(0, size - 120)
    raw = ('{ "messages": [{"role": "user", "content": "%s"}],\n'
           '  "model" : "fast", "temperature": 0.5 }' % pad)

    def once():
        r = stack.gw("POST", "/v1/chat/completions", k["key"], raw)
        return r if r.status_code == 200 else None
    wait_until(once, 3, 0.05, "the rule applies")
    up = stack.mock.requests[-1]
    assert up.body == raw.replace('"fast"', '"gpt-4o-mini"').encode()
    assert int(up.header("content-length")) == len(up.body)


def test_rule_keeps_stream_usage_injection(stack):
    """A rewritten stream still gets include_usage injected (two splices
    into one body) and is metered."""
    stack.api.create("routes", pattern="fast", target="gpt-4o-mini")
    k = stack.api.create_key()
    time.sleep(EFFECTIVE)
    r = stack.chat(k["key"], "fast", extra={"stream": True})
    assert r.status_code == 200, r.text
    body = stack.mock.requests[-1].json()
    assert body["model"] == "gpt-4o-mini", body
    assert body["stream_options"] == {"include_usage": True}, body
    assert '"usage"' not in r.text or '"usage":null' in r.text
    run = stack.run(r.headers["x-torrix-run-id"])
    assert run["model"] == "gpt-4o-mini" and run_tokens(run)["input"] > 0, \
        run


def test_rule_precedence(stack):
    """Organization over global; exact over wildcard; longer wildcard over
    shorter."""
    api = stack.api
    org = api.create("orgs", name="acme")
    prj = api.create("projects", slug="p", name="p", org_id=org["id"])
    ko = api.create_key(project_id=prj["id"])
    kg = api.create_key()

    api.create("routes", pattern="gpt-4*", target="gpt-4.1-mini")
    api.create("routes", pattern="gpt-4o*", target="gpt-4.1-nano")
    api.create("routes", pattern="gpt-4o", target="gpt-4.1")
    api.create("routes", pattern="gpt-*", target="o3-mini",
               org_id=org["id"])

    served_model(stack, kg["key"], "gpt-4o", "gpt-4.1")
    assert served_model(stack, kg["key"], "gpt-4o-mini", "gpt-4.1-nano")
    assert served_model(stack, kg["key"], "gpt-4-turbo", "gpt-4.1-mini")
    assert served_model(stack, kg["key"], "o1", "o1")
    # the org's wildcard beats the global exact rule
    assert served_model(stack, ko["key"], "gpt-4o", "o3-mini")
    assert served_model(stack, ko["key"], "o1", "o1")


def test_rule_to_provider_prefix(stack):
    """A target with a provider prefix goes to that provider (its OpenAI-
    compatible path, its credential header), without the prefix."""
    stack.api.create("routes", pattern="claude",
                     target="anthropic/claude-3-5-haiku-latest")
    k = stack.api.create_key()
    r = served_model(stack, k["key"], "claude", "claude-3-5-haiku-latest")
    up = stack.mock.requests[-1]
    assert up.path == "/v1/chat/completions", up
    assert up.header("x-api-key") == UPSTREAM_ANTHROPIC_KEY
    assert up.header("Authorization") is None
    run = stack.run(r.headers["x-torrix-run-id"])
    assert run["provider"] == "anthropic", run


def test_messages_endpoint_refuses_openai_model(stack):
    k = stack.api.create_key()
    r = stack.messages(k["key"], "gpt-4o")
    e = assert_anthropic_error(r, 400)
    assert "gpt-4o" in e["message"] and "openai" in e["message"], e


# -- agent tiers -----------------------------------------------------------

AGENTS_YAML = """\
agents:
  - agent_id: planner
    name: Planner
    role: planning
    normal: gpt-4o-mini
    heavy: gpt-4o
    max: o1
"""


def test_agent_tiers(stack):
    r = stack.api.request("POST", "/agents/import", data=AGENTS_YAML,
                          headers={"content-type": "application/yaml"})
    assert r.status_code in (200, 201), r.text
    k = stack.api.create_key()
    meta = stack.api.create_key(metadata={"agent": "planner"})
    hdr = {"x-torrix-agent": "planner"}

    served_model(stack, k["key"], "heavy", "gpt-4o", headers=hdr)
    assert served_model(stack, k["key"], "max", "o1", headers=hdr)
    assert served_model(stack, k["key"], "normal", "gpt-4o-mini",
                        headers=hdr)
    # the header never reaches the provider
    assert stack.mock.requests[-1].header("x-torrix-agent") is None
    # the key's metadata names the agent when the header does not
    assert served_model(stack, meta["key"], "heavy", "gpt-4o")

    e = assert_openai_error(stack.chat(k["key"], "heavy", headers={
        "x-torrix-agent": "nobody"}), 400)
    assert "nobody" in e["message"], e
    # no agent: the tier name is an ordinary model name
    r = stack.chat(k["key"], "heavy")
    assert r.status_code == 200 and r.json()["model"] == "heavy", r.text


# -- /v1/models ------------------------------------------------------------

def test_v1_models_lists_allowed_and_aliases(stack):
    stack.api.create("routes", pattern="fast", target="gpt-4o-mini")
    stack.api.create("routes", pattern="o*", target="gpt-4o")   # no alias
    k = stack.api.create_key(allowed_models=["gpt-4o*", "fast", "custom-x"])
    time.sleep(EFFECTIVE)
    r = stack.gw("GET", "/v1/models", k["key"])
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["object"] == "list", j
    by_id = {m["id"]: m for m in j["data"]}
    assert by_id["fast"]["alias_of"] == "gpt-4o-mini", by_id["fast"]
    assert by_id["gpt-4o"]["owned_by"] == "openai", by_id["gpt-4o"]
    assert "gpt-4o-mini" in by_id and "custom-x" in by_id, sorted(by_id)
    assert "o1" not in by_id and "o*" not in by_id, sorted(by_id)
    assert all(m["object"] == "model" for m in j["data"]), j
    assert all(m["id"].startswith(("gpt-4o", "fast", "custom-x"))
               for m in j["data"]), sorted(by_id)


# -- fallback chains -------------------------------------------------------

def dead_provider(stack):
    """A compat provider on a port nobody listens on."""
    port = free_port()
    r = stack.api.put("/providers/deadprov", {
        "kind": "compat", "base_url": "http://127.0.0.1:%d/v1" % port,
        "api_key": "sk-dead"})
    assert r.status_code in (200, 201), r.text


@pytest.mark.parametrize("how,error,status", [
    ("500", "http_500", 500),
    ("429", "http_429", 429),
    ("404", "http_404", 404),
    ("529", "http_529", 529),
    ("slow", "timeout", 0),
    ("connect", "connect", 0),
])
def test_fallback_on_failure(stack, how, error, status):
    primary = "gpt-4o"
    if how == "connect":
        dead_provider(stack)
        primary = "deadprov/gpt-4o"
    r = stack.api.put("/fallbacks/" + primary, {"chain": ["gpt-4o-mini"]})
    assert r.status_code in (200, 201), r.text
    k = stack.api.create_key()
    time.sleep(EFFECTIVE)

    r = stack.chat(k["key"], primary,
                   headers={"x-mock-fail-models": "gpt-4o=" + how})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "gpt-4o-mini", r.text
    run = stack.run(r.headers["x-torrix-run-id"])
    prov = "deadprov" if how == "connect" else "openai"
    assert attempts(run) == [("gpt-4o", prov, error),
                             ("gpt-4o-mini", "openai", None)], run
    assert run["attempts"][0]["status"] == status, run
    assert run["model"] == "gpt-4o-mini" and run["status"] == 200, run
    assert run["model_requested"] == primary, run
    assert run_tokens(run)["input"] > 0 and run["cost_usd"] > 0, run
    want = ["gpt-4o-mini"] if how == "connect" else ["gpt-4o", "gpt-4o-mini"]
    assert upstream_models(stack) == want


def test_fallback_chain_of_three_all_fail(stack):
    """Every model fails: the client gets the last provider's error as it
    was sent, in its own shape, and the run has every attempt."""
    stack.api.put("/fallbacks/gpt-4o", {"chain": ["gpt-4.1", "gpt-4o-mini"]})
    k = stack.api.create_key()
    time.sleep(EFFECTIVE)
    r = stack.chat(k["key"], "gpt-4o", headers={
        "x-mock-fail-models": "gpt-4o=500,gpt-4.1=429,gpt-4o-mini=503"})
    assert_openai_error(r, 503)
    assert upstream_models(stack) == ["gpt-4o", "gpt-4.1", "gpt-4o-mini"]
    run = stack.run(r.headers["x-torrix-run-id"])
    assert attempts(run) == [("gpt-4o", "openai", "http_500"),
                             ("gpt-4.1", "openai", "http_429"),
                             ("gpt-4o-mini", "openai", "http_503")], run
    assert run["status"] == 503 and run["flags"]["error"], run


def test_fallback_last_refused_connection(stack):
    """The last model's connection is refused: nginx's 502 reaches the
    client as an OpenAI-shaped error."""
    dead_provider(stack)
    stack.api.put("/fallbacks/gpt-4o", {"chain": ["deadprov/gpt-4o-mini"]})
    k = stack.api.create_key()
    time.sleep(EFFECTIVE)
    r = stack.chat(k["key"], "gpt-4o",
                   headers={"x-mock-fail-models": "gpt-4o=500"})
    assert_openai_error(r, 502)
    run = stack.run(r.headers["x-torrix-run-id"])
    assert attempts(run) == [("gpt-4o", "openai", "http_500"),
                             ("gpt-4o-mini", "deadprov", "connect")], run


def test_fallback_anthropic_shape(stack):
    """Messages API: an overloaded (529) primary falls back; all failing
    gives the client Anthropic's error shape."""
    stack.api.put("/fallbacks/claude-3-5-sonnet-latest",
                  {"chain": ["claude-3-5-haiku-latest"]})
    k = stack.api.create_key()
    time.sleep(EFFECTIVE)
    r = stack.messages(k["key"], "claude-3-5-sonnet-latest", headers={
        "x-mock-fail-models": "claude-3-5-sonnet-latest=529"})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "claude-3-5-haiku-latest", r.text

    r = stack.messages(k["key"], "claude-3-5-sonnet-latest", headers={
        "x-mock-fail-models":
            "claude-3-5-sonnet-latest=529,claude-3-5-haiku-latest=500"})
    assert_anthropic_error(r, 500)


def test_stream_falls_back_before_first_byte_only(stack):
    stack.api.put("/fallbacks/gpt-4o", {"chain": ["gpt-4o-mini"]})
    k = stack.api.create_key()
    time.sleep(EFFECTIVE)

    # failed before any byte: the fallback's stream, whole
    r = stack.chat(k["key"], "gpt-4o", extra={"stream": True},
                   headers={"x-mock-fail-models": "gpt-4o=503"})
    assert r.status_code == 200, r.text
    assert r.text.rstrip().endswith("data: [DONE]"), r.text
    assert '"gpt-4o-mini"' in r.text
    assert upstream_models(stack) == ["gpt-4o", "gpt-4o-mini"]

    # failed after the first frame: no switch, the client sees the cut
    n = len(stack.mock.requests)
    try:
        r = stack.chat(k["key"], "gpt-4o", extra={"stream": True},
                       headers={"x-mock-fail-models": "gpt-4o=break"})
        text = r.text
    except Exception as e:         # a cut chunked body may raise
        text = str(e)
    assert "[DONE]" not in text, text
    assert upstream_models(stack)[n:] == ["gpt-4o"]
    run = wait_until(lambda: [x for x in stack.runs()
                              if x.get("attempts")
                              and x["attempts"][0]["error"] is None
                              and x["flags"].get("cancelled")], 5, 0.1,
                     "the cut run")[0][0]
    assert [a["model"] for a in run["attempts"]] == ["gpt-4o"], run


# -- strategies ------------------------------------------------------------

def set_strategy(stack, name):
    r = stack.api.patch("/settings", {"routing_strategy": name})
    assert r.status_code == 200, r.text


def test_strategy_cost_tries_cheapest_first(stack):
    stack.api.put("/fallbacks/gpt-4o", {"chain": ["gpt-4o-mini"]})
    set_strategy(stack, "cost")
    k = stack.api.create_key()
    time.sleep(EFFECTIVE)
    for _ in range(3):
        r = stack.chat(k["key"], "gpt-4o")
        assert r.status_code == 200 and r.json()["model"] == "gpt-4o-mini"
    assert upstream_models(stack) == ["gpt-4o-mini"] * 3
    # and back to the chain as written
    set_strategy(stack, "ordered")
    served_model(stack, k["key"], "gpt-4o", "gpt-4o")


def test_strategy_weighted(stack):
    stack.api.put("/fallbacks/gpt-4o", {"chain": ["gpt-4o-mini", "gpt-4.1"],
                                        "weights": [0, 0, 5]})
    set_strategy(stack, "weighted")
    k = stack.api.create_key()
    time.sleep(EFFECTIVE)
    for _ in range(5):
        r = stack.chat(k["key"], "gpt-4o")
        assert r.json()["model"] == "gpt-4.1", r.text
    # the pick fails: the others follow in the written order
    r = stack.chat(k["key"], "gpt-4o",
                   headers={"x-mock-fail-models": "gpt-4.1=500"})
    assert r.json()["model"] == "gpt-4o", r.text


def test_strategy_latency_shared_by_workers(stack):
    stack.api.put("/fallbacks/gpt-4o", {"chain": ["gpt-4o-mini"]})
    set_strategy(stack, "latency")
    k = stack.api.create_key()
    time.sleep(EFFECTIVE)
    hdr = {"x-mock-fail-models": "gpt-4o=delay300"}
    # never observed: a model without observations is tried first, so both
    # get measured within two requests
    for _ in range(2):
        assert stack.chat(k["key"], "gpt-4o", headers=hdr).status_code == 200
    assert sorted(upstream_models(stack)) == ["gpt-4o", "gpt-4o-mini"]
    n = len(stack.mock.requests)
    # from then on the faster one, whichever worker serves the request
    for _ in range(6):
        r = stack.chat(k["key"], "gpt-4o", headers=hdr)
        assert r.json()["model"] == "gpt-4o-mini", r.text
    assert upstream_models(stack)[n:] == ["gpt-4o-mini"] * 6


def test_fallback_reserves_the_dearest_candidate(stack):
    """Admission reserves for the most expensive model of the chain, so a
    fallback to a dearer model cannot overshoot the budget."""
    stack.api.put("/fallbacks/gpt-4o-mini", {"chain": ["o1"]})
    k = stack.api.create_key(daily_cap_usd=1000)
    time.sleep(EFFECTIVE)
    r = stack.chat(k["key"], "gpt-4o-mini", extra={"max_tokens": 1000})
    assert r.status_code == 200, r.text
    run = stack.run(r.headers["x-torrix-run-id"])
    o1 = stack.price("o1")["output_per_mtok_usd"]
    mini = stack.price("gpt-4o-mini")["output_per_mtok_usd"]
    # 1000 output tokens at o1's price, not gpt-4o-mini's, is reserved
    assert o1 > 10 * mini, (o1, mini)
    assert run["reserved_usd"] >= 1000 * o1 / 1e6, run
    # and the run is billed for what served it
    assert run["model"] == "gpt-4o-mini", run
    assert run["cost_usd"] < 1000 * o1 / 1e6, run


# -- credentials through the gateway -----------------------------------------

def test_gateway_credentials_sealed_live_and_rotated(stack):
    """A provider key set through the API reaches the provider within a
    second (the worker opens the sealed value with the data-plane key); a
    master key rotation changes nothing for the gateway; the key is in no
    file under the data dir, no run record and no API answer."""
    secret = "sk-live-rotation-test-0123456789abcdef"
    k = stack.api.create_key()
    r = stack.api.put("/providers/openai", {"api_key": secret})
    assert r.status_code == 200, r.text
    assert secret not in r.text

    def sent():
        r = stack.chat(k["key"])
        up = stack.mock.requests[-1]
        return r if up.header("Authorization") == "Bearer " + secret \
            else None
    r = wait_until(sent, 2, 0.05, "the new key sent upstream")[0]
    run = stack.api.get("/runs/" + r.headers["x-torrix-run-id"]).text

    rot = stack.api.post("/vault/rotate", {})
    assert rot.status_code == 200, rot.text
    n = len(stack.mock.requests)
    assert stack.chat(k["key"]).status_code == 200
    assert stack.mock.requests[n].header("Authorization") == \
        "Bearer " + secret

    time.sleep(1.5)     # spool ingested
    for path in stack.data.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in run
    assert secret not in stack.api.get("/providers/openai").text
    assert secret not in stack.api.get("/audit").text
    assert secret not in stack.error_log()
