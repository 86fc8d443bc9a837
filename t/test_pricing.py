"""The pricing catalog (issue 3): the shipped table, LiteLLM import (API and
CLI), custom prices over both, tiers, exact rounding, bad input.

The LiteLLM test copy is read from ../shared/data (relative to the repo
root); the tests that need it skip when it is absent."""

import json
import re
from decimal import Decimal

import pytest

from torrix import REPO, assert_api_error, assert_cost, expected_cost, \
    money, run_tokens, wait_until

CATALOG = REPO.parent / "shared" / "data" / \
    "model_prices_and_context_window.json"

BASE_KEYS = {  # LiteLLM per-token key -> API per-1M field
    "input_cost_per_token": "input_per_mtok_usd",
    "output_cost_per_token": "output_per_mtok_usd",
    "cache_read_input_token_cost": "cache_read_per_mtok_usd",
    "cache_creation_input_token_cost": "cache_write_per_mtok_usd",
}
ABOVE_KEYS = {  # + "_above_<N>k_tokens"
    "input_cost_per_token": "input_above_per_mtok_usd",
    "output_cost_per_token": "output_above_per_mtok_usd",
    "cache_read_input_token_cost": "cache_read_above_per_mtok_usd",
    "cache_creation_input_token_cost": "cache_write_above_per_mtok_usd",
}
TIER_RE = re.compile(r"^input_cost_per_token_above_(\d+)k_tokens$")


def catalog_bytes():
    if not CATALOG.exists():
        pytest.skip("%s absent" % CATALOG)
    return CATALOG.read_bytes()


def per_token_to_money(v):
    """A LiteLLM per-token USD price (as the JSON text has it) in
    micro-cents per 1M tokens: value * 1e14, exactly."""
    m = Decimal(repr(v)) * 10 ** 14
    return int(m.to_integral_value(rounding="ROUND_HALF_UP"))


def import_catalog(api):
    r = api.post("/pricing/import", catalog_bytes())
    assert r.status_code == 200, r.text
    return r.json()


def embed(stack, key, model, tokens):
    """An embeddings run with this many input tokens; returns the run."""
    r = stack.gw("POST", "/v1/embeddings", key,
                 {"model": model, "input": "x"},
                 headers={"x-mock-usage": json.dumps(
                     {"prompt_tokens": tokens, "total_tokens": tokens})})
    assert r.status_code == 200, r.text
    return stack.run(r.headers["x-torrix-run-id"])


def chat_usage(stack, key, model, usage):
    r = stack.chat(key, model, headers={"x-mock-usage": json.dumps(usage)})
    assert r.status_code == 200, r.text
    return stack.run(r.headers["x-torrix-run-id"])


# -- the shipped table -----------------------------------------------------------

def test_default_table(api):
    ps = {p["model"]: p for p in api.list_all("/pricing")}
    for m in ("gpt-4o", "gpt-4o-mini", "o3-mini", "text-embedding-3-small",
              "claude-3-5-haiku-latest", "claude-sonnet-4-5"):
        assert m in ps, m
        assert ps[m]["source"] == "default", ps[m]
    # well-known list prices per 1M tokens (input, output)
    for m, io in {"gpt-4o": (2.5, 10), "gpt-4o-mini": (0.15, 0.6),
                  "text-embedding-3-small": (0.02, 0)}.items():
        p = api.ok("GET", "/pricing/" + m)
        assert (money(p["input_per_mtok_usd"]),
                money(p["output_per_mtok_usd"])) == \
            tuple(money(x) for x in io), p
    assert {p["provider"] for p in ps.values()} >= {"openai", "anthropic"}
    q = api.ok("GET", "/pricing?q=haiku")["data"]
    assert q and all("haiku" in p["model"] for p in q), q
    assert_api_error(api.get("/pricing/no-such-model"), 404)


# -- import ---------------------------------------------------------------------

def test_import_catalog(api):
    src = json.loads(catalog_bytes())
    res = import_catalog(api)
    assert res["imported"] > 200, res
    assert res["errors"] == [], res
    # every imported price is the file's, exactly (no 10x, no float drift)
    ps = {p["model"]: p for p in api.list_all("/pricing")}
    checked = 0
    for model, e in src.items():
        if not isinstance(e, dict) or "input_cost_per_token" not in e:
            continue
        if e.get("litellm_provider") in ("ollama", "ollama_chat"):
            continue
        p = ps.get(model)
        assert p is not None, model
        layer = api.ok("GET", "/pricing/" + model)["layers"]["catalog"] \
            if "layers" not in p else p["layers"]["catalog"]
        for lk, field in BASE_KEYS.items():
            if lk in e:
                assert money(layer[field]) == per_token_to_money(e[lk]), \
                    (model, field, layer[field], e[lk])
        tiers = [int(m.group(1)) for m in map(TIER_RE.match, e) if m]
        if tiers:
            # "*_above_1hr" is a cache duration, "*_priority" a service
            # tier: neither is a context tier
            assert layer["tier_threshold"] == tiers[0] * 1000, (model, layer)
            sfx = "_above_%dk_tokens" % tiers[0]
            for lk, field in ABOVE_KEYS.items():
                if lk + sfx in e:
                    assert money(layer[field]) == \
                        per_token_to_money(e[lk + sfx]), (model, field)
        else:
            assert layer["tier_threshold"] is None, (model, layer)
        checked += 1
    assert checked > 200
    # a catalog-only model is priced, from the catalog
    g = api.ok("GET", "/pricing/gemini-2.5-pro")
    assert g["source"] == "catalog", g
    assert money(g["input_per_mtok_usd"]) == \
        per_token_to_money(src["gemini-2.5-pro"]["input_cost_per_token"])
    # a model in both: the catalog layer applies, the default one is kept
    p = api.ok("GET", "/pricing/gpt-4o")
    assert p["source"] == "catalog" and set(p["layers"]) >= \
        {"catalog", "default"}, p
    # importing the same file again changes nothing
    again = import_catalog(api)
    assert again["imported"] == res["imported"], again
    if "changed" in again:
        assert again["changed"] == 0, again


def test_import_cli(cp_stopped):
    data = catalog_bytes()
    s = cp_stopped
    s.start_cp()
    s.stop_cp()
    p = s.cp_cli("pricing", "import", str(CATALOG), "--data", s.data)
    assert p.returncode == 0, (p.stdout, p.stderr)
    s.start_cp()
    g = s.api.ok("GET", "/pricing/gemini-2.5-pro")
    assert g["source"] == "catalog", g
    n = sum(1 for e in json.loads(data).values()
            if isinstance(e, dict) and "input_cost_per_token" in e)
    assert len(s.api.list_all("/pricing")) >= n
    bad = s.tmp / "bad.json"
    bad.write_text("[1, 2")
    s.stop_cp()
    p = s.cp_cli("pricing", "import", str(bad), "--data", s.data)
    assert p.returncode != 0, p
    s.start_cp()


def test_import_bad_bodies(api):
    for body in ("not json", "[1,2]", '"x"', "{"):
        r = api.post("/pricing/import", body)
        assert_api_error(r, 400)
    # per-entry problems are reported, good entries still imported
    r = api.post("/pricing/import", {
        "good-model-x": {"input_cost_per_token": 1e-06,
                         "output_cost_per_token": 2e-06,
                         "litellm_provider": "openai", "mode": "chat"},
        "bad-model-x": {"input_cost_per_token": -1,
                        "output_cost_per_token": 2e-06},
        "sample_spec": {"input_cost_per_token": 0}})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["imported"] >= 1 and res["errors"], res
    assert "bad-model-x" in json.dumps(res["errors"]), res
    assert api.ok("GET", "/pricing/good-model-x")["input_per_mtok_usd"] == 1
    assert api.get("/pricing/bad-model-x").status_code == 404


# -- custom prices ---------------------------------------------------------------

def test_custom_price_wins_then_falls_back(stack):
    k = stack.api.create_key()
    usage = {"prompt_tokens": 1000, "completion_tokens": 500,
             "total_tokens": 1500}
    base = stack.price("gpt-4o-mini")
    run = chat_usage(stack, k["key"], "gpt-4o-mini", usage)
    assert_cost(run, expected_cost(base, run_tokens(run)))

    custom = {"input_per_mtok_usd": 100, "output_per_mtok_usd": 300.5}
    r = stack.api.put("/pricing/gpt-4o-mini", custom)
    assert r.status_code == 200, r.text
    p = stack.price("gpt-4o-mini")
    assert p["source"] == "custom" and p["input_per_mtok_usd"] == 100, p
    assert "default" in p["layers"] and "custom" in p["layers"], p
    want = expected_cost(p, {"input": 1000, "output": 500, "cache_read": 0,
                             "cache_write": 0, "reasoning": 0})
    assert want == 25025000     # $0.1 + $0.15025

    def costs(cost_mc):
        run = chat_usage(stack, k["key"], "gpt-4o-mini", usage)
        return abs(run["cost_usd"] - cost_mc / 1e8) < 1e-12
    _, took = wait_until(lambda: costs(want), 1.5, 0.02, "custom price used")
    assert took < 1.2, took

    r = stack.api.delete("/pricing/gpt-4o-mini")
    assert r.status_code in (200, 204), r.text
    assert stack.price("gpt-4o-mini")["source"] == "default"
    wait_until(lambda: costs(expected_cost(base, {
        "input": 1000, "output": 500, "cache_read": 0, "cache_write": 0,
        "reasoning": 0})), 1.5, 0.02, "back to the default price")
    r = stack.api.delete("/pricing/gpt-4o-mini")
    assert_api_error(r, 404)


def test_custom_price_for_unknown_model(stack):
    k = stack.api.create_key()
    usage = {"prompt_tokens": 10, "completion_tokens": 10,
             "total_tokens": 20}
    run = chat_usage(stack, k["key"], "my-finetune-1", usage)
    assert run["flags"]["unpriced"] is True and run["cost_usd"] == 0
    stack.api.ok("PUT", "/pricing/my-finetune-1",
                 {"input_per_mtok_usd": 7, "output_per_mtok_usd": 9,
                  "provider": "openai"})

    def priced():
        run = chat_usage(stack, k["key"], "my-finetune-1", usage)
        return run if not run["flags"]["unpriced"] else None
    run = wait_until(priced, 1.5, 0.02, "priced")[0]
    assert_cost(run, 10 * 700000000 // 10 ** 6 + 10 * 900000000 // 10 ** 6)
    # free: cost 0 and not unpriced
    stack.api.ok("PUT", "/pricing/my-finetune-1", {"free": True})

    def free():
        run = chat_usage(stack, k["key"], "my-finetune-1", usage)
        return run if run["cost_usd"] == 0 else None
    run = wait_until(free, 1.5, 0.02, "free")[0]
    assert run["flags"]["unpriced"] is False, run


def test_rounding_half_up_once(stack):
    """1e-8 USD (one micro-cent) per 1M tokens: 499999 tokens cost 0,
    500000 cost 1 micro-cent, 1500000 cost 2 (half up), 2499999 cost 2."""
    k = stack.api.create_key()
    stack.api.ok("PUT", "/pricing/emb-rounding",
                 {"input_per_mtok_usd": 1e-08, "output_per_mtok_usd": 0})
    wait_until(lambda: not embed(stack, k["key"], "emb-rounding", 1)
               ["flags"]["unpriced"], 1.5, 0.02, "price published")
    for tokens, mc in ((499999, 0), (500000, 1), (1500000, 2),
                       (2499999, 2), (2500000, 3)):
        run = embed(stack, k["key"], "emb-rounding", tokens)
        assert run["tokens"]["input"] == tokens
        assert_cost(run, mc)
        assert run["flags"]["unpriced"] is False


def test_tiered_price_custom(stack):
    """Above tier_threshold input tokens the tier prices apply to the whole
    request (cache reads included); at the threshold the base prices."""
    k = stack.api.create_key()
    stack.api.ok("PUT", "/pricing/gpt-tiered-x", {
        "input_per_mtok_usd": 1, "output_per_mtok_usd": 2,
        "cache_read_per_mtok_usd": 0.5, "tier_threshold": 200000,
        "input_above_per_mtok_usd": 3, "output_above_per_mtok_usd": 5,
        "cache_read_above_per_mtok_usd": 1.5})
    p = stack.price("gpt-tiered-x")
    wait_until(lambda: not chat_usage(stack, k["key"], "gpt-tiered-x", {
        "prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2})
        ["flags"]["unpriced"], 1.5, 0.02, "price published")
    for inp, cached in ((200000, 0), (200001, 0), (250000, 100000),
                        (150000, 50000)):
        usage = {"prompt_tokens": inp, "completion_tokens": 1000,
                 "total_tokens": inp + 1000,
                 "prompt_tokens_details": {"cached_tokens": cached}}
        run = chat_usage(stack, k["key"], "gpt-tiered-x", usage)
        t = run_tokens(run)
        assert t["input"] == inp and t["cache_read"] == cached
        cost = expected_cost(p, t)
        assert_cost(run, cost)
    # by hand: 250000 in (100000 cached), 1000 out, all at tier prices
    run = chat_usage(stack, k["key"], "gpt-tiered-x", {
        "prompt_tokens": 250000, "completion_tokens": 1000,
        "total_tokens": 251000,
        "prompt_tokens_details": {"cached_tokens": 100000}})
    assert_cost(run, (150000 * 300000000 + 100000 * 150000000 +
                      1000 * 500000000 + 500000) // 10 ** 6)


def test_tiered_price_catalog(stack):
    """An imported tiered Anthropic model: 250k input tokens are priced at
    the *_above_200k_tokens prices, 150k at the base ones."""
    src = json.loads(catalog_bytes())
    import_catalog(stack.api)
    model = "claude-sonnet-4-5"
    e = src[model]
    p = stack.price(model)
    assert p["source"] == "catalog" and p["tier_threshold"] == 200000, p
    k = stack.api.create_key()
    for inp in (250000, 150000):
        usage = {"input_tokens": inp - 30000, "output_tokens": 2000,
                 "cache_read_input_tokens": 20000,
                 "cache_creation_input_tokens": 10000}
        r = stack.messages(k["key"], model,
                           headers={"x-mock-usage": json.dumps(usage)})
        run = stack.run(r.headers["x-torrix-run-id"])
        t = run_tokens(run)
        assert t == {"input": inp, "output": 2000, "cache_read": 20000,
                     "cache_write": 10000, "reasoning": 0}, run
        sfx = "_above_200k_tokens" if inp > 200000 else ""
        want = ((inp - 30000) * per_token_to_money(
            e["input_cost_per_token" + sfx]) +
            20000 * per_token_to_money(e["cache_read_input_token_cost" + sfx])
            + 10000 * per_token_to_money(
                e["cache_creation_input_token_cost" + sfx]) +
            2000 * per_token_to_money(e["output_cost_per_token" + sfx]) +
            500000) // 10 ** 6
        assert want == expected_cost(p, t)
        assert_cost(run, want)


def test_put_price_bad_bodies(api):
    good = {"input_per_mtok_usd": 1, "output_per_mtok_usd": 2}
    bad = [
        "not json",
        [],
        {"input_per_mtok_usd": 1},                          # no output
        {"input_per_mtok_usd": -1, "output_per_mtok_usd": 2},
        {"input_per_mtok_usd": "1", "output_per_mtok_usd": 2},
        {"input_per_mtok_usd": 1, "output_per_mtok_usd": 2, "bogus": 1},
        {"input_per_mtok_usd": 1, "output_per_mtok_usd": 2,
         "tier_threshold": 1000},                           # no above prices
        {"input_per_mtok_usd": 1, "output_per_mtok_usd": 2,
         "tier_threshold": -5, "input_above_per_mtok_usd": 1,
         "output_above_per_mtok_usd": 1},
        {"input_per_mtok_usd": 1, "output_per_mtok_usd": 2, "free": "yes"},
        {"input_per_mtok_usd": 1, "output_per_mtok_usd": 1e12},
    ]
    for body in bad:
        r = api.put("/pricing/custom-x", body)
        assert_api_error(r, 400)
    assert api.get("/pricing/custom-x").status_code == 404
    assert api.put("/pricing/custom-x", good).status_code == 200
    assert api.put("/pricing/bad%20name", good).status_code == 400
    assert api.put("/pricing/custom-x", good, key=None).status_code == 401
