"""The model router API (routes, fallback chains, routing strategy, the
available-models list) of torrix-cp and what it publishes to the snapshot;
the upstream attempts of a run in the runs API.  torrix-cp alone: a run is
handed over through a spool file written here the way a worker writes it."""

import os
import struct
import subprocess
import time

from torrix import assert_api_error, money, wait_until

# tx_snapshot.h
TX_RT_ID, TX_RT_ORG, TX_RT_PATTERN, TX_RT_TARGET = 1, 2, 3, 4
TX_FB_MODEL, TX_FB_CHAIN, TX_FB_WEIGHTS = 1, 2, 3
TX_FB_MAX = 8
STRATEGIES = {"ordered": 0, "weighted": 1, "latency": 2, "cost": 3}

# tx_spool.h
TX_RUN_ID, TX_RUN_START_US, TX_RUN_KEY_ID = 1, 2, 3
TX_RUN_ENDPOINT, TX_RUN_MODEL_REQ, TX_RUN_MODEL, TX_RUN_PROVIDER = 7, 8, 9, 10
TX_RUN_STATUS, TX_RUN_LATENCY_US, TX_RUN_TOKENS_IN = 11, 13, 18
TX_RUN_TOKENS_OUT, TX_RUN_COST, TX_RUN_FLAGS = 19, 23, 24
TX_RUN_TAGS, TX_RUN_ATTEMPT = 27, 37
TX_ATT_MODEL, TX_ATT_PROVIDER, TX_ATT_STATUS, TX_ATT_US, TX_ATT_ERROR = \
    1, 2, 3, 4, 5


# -- snapshot ----------------------------------------------------------------

def _unprint(s):
    """A value of `mdb_dump -p`: printable bytes as is, others as \\xx."""
    out = bytearray()
    i = 0
    while i < len(s):
        if s[i] == 0x5c:
            if s[i + 1] == 0x5c:
                out.append(0x5c)
                i += 2
            else:
                out.append(int(s[i + 1:i + 3], 16))
                i += 3
        else:
            out.append(s[i])
            i += 1
    return bytes(out)


def snap_db(cp, name):
    """{key: value} of snapshot db `name` (bytes)."""
    r = subprocess.run(["mdb_dump", "-p", "-s", name,
                        str(cp.data / "snapshot")], capture_output=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split(b"\n")
    i = lines.index(b"HEADER=END") + 1
    out = {}
    while lines[i] != b"DATA=END":
        out[_unprint(lines[i][1:])] = _unprint(lines[i + 1][1:])
        i += 2
    return out


def tlv(b):
    """{tag: value} of a TLV record (tx_record.h); strings decoded."""
    out = {}
    i = 0
    while i < len(b):
        tag, n = struct.unpack_from("<HI", b, i)
        out[tag] = b[i + 6:i + 6 + n]
        i += 6 + n
    assert i == len(b), b
    return out


def snap_rec(cp, db, key, present=True):
    """The TLV record `key` of snapshot db, waited for (1 s) to be there or
    gone."""
    def get():
        v = snap_db(cp, db).get(key.encode())
        if present:
            return v is not None and tlv(v)
        return v is None
    v, _ = wait_until(get, 1.0, what="%s %s in the snapshot" % (db, key))
    return v


def setting(cp, name):
    v = snap_db(cp, "settings").get(name.encode())
    return None if v is None else struct.unpack("<Q", v)[0]


# -- spool -------------------------------------------------------------------

def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


CRC_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xffffffff
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >> 8)
    return c ^ 0xffffffff


def rec_str(tag, s):
    b = s if isinstance(s, bytes) else s.encode()
    return struct.pack("<HI", tag, len(b)) + b


def rec_u64(tag, v):
    return struct.pack("<HIQ", tag, 8, v)


def rec_i64(tag, v):
    return struct.pack("<HIq", tag, 8, v)


def write_spool(spool_dir, records):
    """A sealed spool file holding these run records (tx_spool.h)."""
    now = int(time.time() * 1e6)
    body = b""
    for rec in records:
        frame = struct.pack("<II", len(rec), crc32c(rec)) + rec
        body += frame + b"\0" * (-len(frame) % 8)
    body += struct.pack("<I", 0xffffffff) + b"\0" * 4
    cap = 64 + len(body)
    hdr = b"TXSPOOL1" + struct.pack("<IIqQ", 1, os.getpid(), now, cap)
    hdr += b"\0" * (64 - len(hdr))
    name = "%016x-%d" % (now, os.getpid())
    tmp = os.path.join(str(spool_dir), name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(hdr + body)
    os.rename(tmp, os.path.join(str(spool_dir), name + ".txs"))


# -- helpers -----------------------------------------------------------------

def audit_for(api, target_id):
    return [e for e in api.list_all("/audit")
            if e.get("target_id") == target_id]


def route(api, **fields):
    return api.create("routes", **fields)


# -- routes ------------------------------------------------------------------

def test_route_crud_audit_snapshot(cp):
    api = cp.api
    rt = route(api, pattern="gpt-4*", target="gpt-4o-mini")
    assert rt["id"].startswith("rt_"), rt
    assert rt["pattern"] == "gpt-4*" and rt["target"] == "gpt-4o-mini"
    assert rt["org_id"] is None
    assert rt["created_at"] and rt["updated_at"]

    s = snap_rec(cp, "routes", rt["id"])
    assert s == {TX_RT_ID: rt["id"].encode(), TX_RT_PATTERN: b"gpt-4*",
                 TX_RT_TARGET: b"gpt-4o-mini"}, s

    assert api.ok("GET", "/routes/" + rt["id"]) == rt
    assert [x["id"] for x in api.list_all("/routes")] == [rt["id"]]

    up = api.ok("PATCH", "/routes/" + rt["id"],
                {"target": "anthropic/claude-3-5-haiku-latest"})
    assert up["target"] == "anthropic/claude-3-5-haiku-latest"
    assert up["created_at"] == rt["created_at"]
    s = snap_rec(cp, "routes", rt["id"])
    assert s[TX_RT_TARGET] == b"anthropic/claude-3-5-haiku-latest", s

    # a no-op patch writes nothing
    n = len(api.list_all("/audit"))
    api.ok("PATCH", "/routes/" + rt["id"],
           {"target": "anthropic/claude-3-5-haiku-latest"})
    assert len(api.list_all("/audit")) == n

    d = api.ok("DELETE", "/routes/" + rt["id"])
    assert d["deleted"] is True
    snap_rec(cp, "routes", rt["id"], present=False)
    assert_api_error(api.get("/routes/" + rt["id"]), 404)
    assert_api_error(api.delete("/routes/" + rt["id"]), 404)
    assert_api_error(api.patch("/routes/" + rt["id"], {"target": "gpt-4o"}),
                     404)

    entries = audit_for(api, rt["id"])
    assert [e["action"] for e in entries if e["seq"]] and \
        sorted(e["action"] for e in entries) == \
        ["route.create", "route.delete", "route.update"], entries
    by = {e["action"]: e for e in entries}
    assert all(e["target_type"] == "route" and e["actor"] for e in entries)
    assert by["route.create"]["diff"]["pattern"] == [None, "gpt-4*"]
    assert by["route.update"]["diff"] == {
        "target": ["gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"]}
    assert by["route.delete"]["diff"]["target"] == \
        ["anthropic/claude-3-5-haiku-latest", None]


def test_route_validation(cp):
    api = cp.api

    def bad(body, status=400, words=None):
        r = api.post("/routes", body)
        e = assert_api_error(r, status)
        if words:
            assert words in e["message"], e

    bad({"pattern": "gpt-4*", "target": "no-such-model-x"}, 400,
        "unknown model")
    bad({"pattern": "gpt-4*", "target": "nope/gpt-4o"}, 400, "unknown model")
    for p in ("", "gpt 4*", "gpt-4\t", "x" * 257, "gpt\x7f"):
        bad({"pattern": p, "target": "gpt-4o-mini"}, 400, "pattern")
    bad({"pattern": 5, "target": "gpt-4o-mini"}, 400, "pattern")
    for t in ("gpt-4*", "", "gpt 4o", "x" * 257):
        bad({"pattern": "a", "target": t}, 400, "target")
    bad({"pattern": "gpt-4o", "target": "gpt-4o"}, 400, "itself")
    bad({"target": "gpt-4o"}, 400, "pattern")
    bad({"pattern": "a"}, 400, "target")
    bad({"pattern": "a", "target": "gpt-4o", "weight": 1}, 400, "unknown")
    bad({"pattern": "a", "target": "gpt-4o", "id": "rt_x"}, 400, "read-only")
    bad({"pattern": "a", "target": "gpt-4o",
         "org_id": "org_aaaaaaaaaaaaaaaaaaaa"}, 400, "org_id")
    bad("[]", 400)
    bad("{", 400)

    # pattern 256 bytes is fine
    long = route(api, pattern="m" * 255 + "*", target="gpt-4o")
    assert snap_rec(cp, "routes", long["id"])[TX_RT_PATTERN] == \
        b"m" * 255 + b"*"

    g = route(api, pattern="fast", target="gpt-4o-mini")
    r = api.post("/routes", {"pattern": "fast", "target": "gpt-4o"})
    e = assert_api_error(r, 409)
    assert g["id"] in e["message"], e

    # the same pattern in an org scope is another rule; twice there is not
    org = api.create("orgs", name="acme")
    o = route(api, pattern="fast", target="gpt-4o", org_id=org["id"])
    assert o["org_id"] == org["id"]
    s = snap_rec(cp, "routes", o["id"])
    assert s[TX_RT_ORG] == org["id"].encode() and s[TX_RT_TARGET] == b"gpt-4o"
    assert_api_error(api.post("/routes", {"pattern": "fast",
                                          "target": "gpt-4o-mini",
                                          "org_id": org["id"]}), 409)

    # moving a rule onto another's scope and pattern is a conflict too
    other = route(api, pattern="slow", target="gpt-4o")
    assert_api_error(api.patch("/routes/" + other["id"],
                               {"pattern": "fast"}), 409)
    assert_api_error(api.patch("/routes/" + other["id"],
                               {"target": "no-such-model-x"}), 400)
    assert_api_error(api.patch("/routes/" + other["id"],
                               {"org_id": "org_aaaaaaaaaaaaaaaaaaaa"}), 400)
    moved = api.ok("PATCH", "/routes/" + other["id"], {"org_id": org["id"]})
    assert moved["org_id"] == org["id"]
    assert snap_rec(cp, "routes", other["id"])[TX_RT_ORG] == \
        org["id"].encode()
    back = api.ok("PATCH", "/routes/" + other["id"], {"org_id": None})
    assert back["org_id"] is None
    assert TX_RT_ORG not in snap_rec(cp, "routes", other["id"])

    # ?org_id= lists one scope
    ids = lambda q: sorted(x["id"] for x in api.list_all("/routes" + q))  # noqa
    assert ids("?org_id=" + org["id"]) == [o["id"]]
    assert ids("?org_id=global") == sorted([long["id"], g["id"],
                                            other["id"]])
    assert ids("") == sorted([long["id"], g["id"], other["id"], o["id"]])

    # a route's pattern and a compat provider's prefix are routable targets
    assert_api_error(api.post("/routes", {"pattern": "x1",
                                          "target": "mylocal/llama"}), 400)
    api.ok("PUT", "/providers/mylocal",
           {"kind": "compat", "base_url": "http://127.0.0.1:9/v1"})
    route(api, pattern="x1", target="mylocal/llama")
    route(api, pattern="x2", target="fast")
    route(api, pattern="x3", target="ollama/llama3.2")


# -- fallbacks ---------------------------------------------------------------

def test_fallback_crud_audit_snapshot(cp):
    api = cp.api
    r = api.put("/fallbacks/gpt-4o", {
        "chain": ["gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"],
        "weights": [3, 1, 1]})
    assert r.status_code == 201, r.text
    fb = r.json()
    assert fb["model"] == "gpt-4o"
    assert fb["chain"] == ["gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"]
    assert fb["weights"] == [3, 1, 1]
    s = snap_rec(cp, "fallbacks", "gpt-4o")
    assert s == {TX_FB_MODEL: b"gpt-4o",
                 TX_FB_CHAIN: b"gpt-4o-mini\nanthropic/claude-3-5-haiku-latest",
                 TX_FB_WEIGHTS: b"3\n1\n1"}, s

    # a primary with a '/' (and no weights: absent in the snapshot)
    r = api.put("/fallbacks/anthropic/claude-3-5-sonnet-latest",
                {"chain": ["claude-3-5-haiku-latest"]})
    assert r.status_code == 201, r.text
    assert r.json()["weights"] is None
    s = snap_rec(cp, "fallbacks", "anthropic/claude-3-5-sonnet-latest")
    assert s == {TX_FB_MODEL: b"anthropic/claude-3-5-sonnet-latest",
                 TX_FB_CHAIN: b"claude-3-5-haiku-latest"}, s
    g = api.ok("GET", "/fallbacks/anthropic/claude-3-5-sonnet-latest")
    assert g["chain"] == ["claude-3-5-haiku-latest"]

    assert [x["model"] for x in api.list_all("/fallbacks")] == \
        ["anthropic/claude-3-5-sonnet-latest", "gpt-4o"]

    # replace: 200, weights dropped
    r = api.put("/fallbacks/gpt-4o", {"chain": ["gpt-4.1"], "weights": None})
    assert r.status_code == 200, r.text
    assert r.json()["created_at"] == fb["created_at"]
    s = snap_rec(cp, "fallbacks", "gpt-4o")
    assert s == {TX_FB_MODEL: b"gpt-4o", TX_FB_CHAIN: b"gpt-4.1"}, s

    # the same again: nothing audited
    n = len(api.list_all("/audit"))
    assert api.put("/fallbacks/gpt-4o", {"chain": ["gpt-4.1"]}) \
        .status_code == 200
    assert len(api.list_all("/audit")) == n

    d = api.ok("DELETE", "/fallbacks/gpt-4o")
    assert d["deleted"] is True and d["chain"] == ["gpt-4.1"]
    snap_rec(cp, "fallbacks", "gpt-4o", present=False)
    assert_api_error(api.get("/fallbacks/gpt-4o"), 404)
    assert_api_error(api.delete("/fallbacks/gpt-4o"), 404)

    entries = audit_for(api, "gpt-4o")
    by = {e["action"]: e for e in entries}
    assert sorted(by) == ["fallback.create", "fallback.delete",
                          "fallback.update"], entries
    assert all(e["target_type"] == "fallback" for e in entries)
    assert by["fallback.create"]["diff"]["weights"] == [None, [3, 1, 1]]
    assert by["fallback.update"]["diff"] == {
        "chain": [["gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"],
                  ["gpt-4.1"]],
        "weights": [[3, 1, 1], None]}
    assert by["fallback.delete"]["diff"]["chain"] == [["gpt-4.1"], None]


def test_fallback_validation(cp):
    api = cp.api

    def bad(model, body, words=None):
        e = assert_api_error(api.put("/fallbacks/" + model, body), 400)
        if words:
            assert words in e["message"], e

    bad("gpt-4o", {"chain": []}, "chain")
    bad("gpt-4o", {}, "chain")
    bad("gpt-4o", {"chain": "gpt-4o-mini"}, "chain")
    bad("gpt-4o", {"chain": ["gpt-4o-mini", 1]}, "chain")
    bad("gpt-4o", {"chain": ["gpt-4o-mini", "gpt-4o-mini"]}, "duplicate")
    bad("gpt-4o", {"chain": ["gpt-4o"]}, "primary")
    bad("gpt-4o", {"chain": ["no-such-model-x"]}, "unknown model")
    bad("gpt-4o", {"chain": ["gpt-4*"]}, "chain")
    many = ["gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o1",
            "o3", "o3-mini", "o4-mini"]
    bad("gpt-4o", {"chain": many[:TX_FB_MAX]}, "chain")
    bad("gpt-4o", {"chain": ["gpt-4o-mini"], "weights": [1]}, "weights")
    bad("gpt-4o", {"chain": ["gpt-4o-mini"], "weights": [1, 2, 3]}, "weights")
    bad("gpt-4o", {"chain": ["gpt-4o-mini"], "weights": [0, 0]}, "zero")
    bad("gpt-4o", {"chain": ["gpt-4o-mini"], "weights": [1, -1]}, "weights")
    bad("gpt-4o", {"chain": ["gpt-4o-mini"], "weights": [1, 1.5]}, "weights")
    bad("gpt-4o", {"chain": ["gpt-4o-mini"], "weights": [1, 1000001]},
        "weights")
    bad("gpt-4o", {"chain": ["gpt-4o-mini"], "weights": [1, "1"]}, "weights")
    bad("gpt-4o", {"chain": ["gpt-4o-mini"], "weights": "1,1"}, "weights")
    bad("gpt-4*", {"chain": ["gpt-4o-mini"]}, "primary")
    bad("gpt-4o", {"chain": ["gpt-4o-mini"], "other": 1}, "unknown")
    assert snap_db(cp, "fallbacks") == {}
    assert api.list_all("/fallbacks") == []

    # the longest chain, weights at the bounds
    r = api.put("/fallbacks/gpt-4o", {"chain": many[:TX_FB_MAX - 1],
                                      "weights": [0] * 7 + [1000000]})
    assert r.status_code == 201, r.text
    s = snap_rec(cp, "fallbacks", "gpt-4o")
    assert s[TX_FB_CHAIN] == "\n".join(many[:TX_FB_MAX - 1]).encode()
    assert s[TX_FB_WEIGHTS] == b"0\n" * 7 + b"1000000"

    # a fallback primary is a model the router knows: it may be a target
    api.ok("PUT", "/fallbacks/team-default", {"chain": ["gpt-4o-mini"]})
    route(api, pattern="tm", target="team-default")


# -- routing strategy ----------------------------------------------------------

def test_routing_strategy_setting(cp):
    api = cp.api
    assert api.ok("GET", "/settings")["routing_strategy"] == "ordered"
    assert setting(cp, "routing_strategy") == 0

    for name in ("weighted", "latency", "cost", "ordered", "cost"):
        s = api.ok("PATCH", "/settings", {"routing_strategy": name})
        assert s["routing_strategy"] == name
        v, _ = wait_until(lambda: setting(cp, "routing_strategy")
                          == STRATEGIES[name], 1.0, what=name)

    for v in ("fastest", "", None, 1):
        assert_api_error(api.patch("/settings", {"routing_strategy": v}), 400)
    assert api.ok("GET", "/settings")["routing_strategy"] == "cost"

    edits = [e for e in api.list_all("/audit")
             if e["target_type"] == "settings"
             and "routing_strategy" in e.get("diff", {})]
    assert [e["diff"]["routing_strategy"] for e in
            sorted(edits, key=lambda e: e["seq"])] == [
        [None, "weighted"], ["weighted", "latency"], ["latency", "cost"],
        ["cost", "ordered"], ["ordered", "cost"]]

    # kept across a restart (the resync rewrites it, never drops it)
    cp.stop_cp()
    cp.start_cp()
    assert api.ok("GET", "/settings")["routing_strategy"] == "cost"
    assert setting(cp, "routing_strategy") == 3


# -- models --------------------------------------------------------------------

def test_models_list(cp):
    api = cp.api
    api.ok("PUT", "/pricing/ollama/llama3.2",
           {"input_per_mtok_usd": 1, "output_per_mtok_usd": 2})
    route(api, pattern="fast", target="gpt-4o-mini")
    org = api.create("orgs", name="acme")
    route(api, pattern="fast", target="claude-3-5-haiku-latest",
          org_id=org["id"])
    route(api, pattern="claude*", target="gpt-4o")
    api.ok("PUT", "/fallbacks/gpt-4o", {"chain": ["gpt-4o-mini"]})
    api.ok("PUT", "/fallbacks/smart", {"chain": ["gpt-4.1", "o3"]})

    models = api.list_all("/models")
    by = {}
    for m in models:
        by.setdefault(m["id"], []).append(m)

    mini = by["gpt-4o-mini"][0]
    assert mini["provider"] == "openai"
    price = api.ok("GET", "/pricing/gpt-4o-mini")
    assert money(mini["input_per_mtok_usd"]) == \
        money(price["input_per_mtok_usd"]) == money(0.15)
    assert money(mini["output_per_mtok_usd"]) == money(0.6)
    assert by["claude-3-5-haiku-latest"][0]["provider"] == "anthropic"

    ol = by["ollama/llama3.2"][0]
    assert ol["provider"] == "ollama" and ol["free"] is True
    assert ol["input_per_mtok_usd"] == 0 and ol["output_per_mtok_usd"] == 0

    fast = sorted(by["fast"], key=lambda m: m["scope"] != "global")
    assert [(m["alias_of"], m["scope"]) for m in fast] == \
        [("gpt-4o-mini", "global"), ("claude-3-5-haiku-latest", org["id"])]
    assert fast[0]["provider"] == "openai"
    assert "claude*" not in by            # a wildcard is no model name

    assert by["gpt-4o"][0]["fallbacks"] == ["gpt-4o-mini"]
    assert by["smart"] == [{"id": "smart", "fallbacks": ["gpt-4.1", "o3"]}]

    # every catalog model, each id once (aliases: once per scope)
    catalog = api.list_all("/pricing")
    assert {p["model"] for p in catalog} <= set(by)
    assert len(models) == len(catalog) + 3

    # pages: the same list, in order
    paged = api.list_all("/models", limit=7)
    assert paged == models
    keys = [(m["id"], m.get("scope", "")) for m in models]
    assert keys == sorted(keys)

    anth = api.list_all("/models?provider=anthropic")
    assert anth and all(m["provider"] == "anthropic" for m in anth)
    assert {"id": "fast", "alias_of": "claude-3-5-haiku-latest",
            "scope": org["id"], "provider": "anthropic"} in anth
    assert api.list_all("/models?provider=nope") == []
    assert_api_error(api.get("/models?limit=0"), 400)


# -- run attempts --------------------------------------------------------------

def attempt(model, provider, status, us, error=None):
    b = rec_str(TX_ATT_MODEL, model) + rec_str(TX_ATT_PROVIDER, provider) + \
        rec_u64(TX_ATT_STATUS, status) + rec_u64(TX_ATT_US, us)
    if error:
        b += rec_str(TX_ATT_ERROR, error)
    return rec_str(TX_RUN_ATTEMPT, b)


def run_record(run_id, attempts, tags=None):
    """A run record; its attempts (TLV fields) interleaved with other tags,
    as a writer may put them.  Tags make the ingest rewrite the record."""
    now = int(time.time() * 1e6)
    return (rec_str(TX_RUN_ID, run_id) + rec_i64(TX_RUN_START_US, now) +
            rec_str(TX_RUN_KEY_ID, "key_aaaaaaaaaaaaaaaaaaaa") +
            rec_u64(TX_RUN_ENDPOINT, 1) +
            rec_str(TX_RUN_MODEL_REQ, "fast") +
            b"".join(attempts[:1]) +
            rec_str(TX_RUN_MODEL, "claude-3-5-haiku-latest") +
            rec_str(TX_RUN_PROVIDER, "anthropic") +
            rec_u64(TX_RUN_STATUS, 200) +
            rec_u64(TX_RUN_LATENCY_US, 1234567) +
            b"".join(attempts[1:]) +
            rec_u64(TX_RUN_TOKENS_IN, 10) + rec_u64(TX_RUN_TOKENS_OUT, 5) +
            rec_i64(TX_RUN_COST, 0) + rec_u64(TX_RUN_FLAGS, 0) +
            (rec_str(TX_RUN_TAGS, tags) if tags else b""))


def test_run_attempts(cp):
    api = cp.api
    ms = int(time.time() * 1000)
    rid = ms.to_bytes(6, "big") + os.urandom(10)
    rid0 = (ms - 1).to_bytes(6, "big") + os.urandom(10)
    atts = [attempt("gpt-4o-mini", "openai", 0, 2000500, "timeout"),
            attempt("gpt-4o", "openai", 500, 15250, "http_500"),
            attempt("claude-3-5-haiku-latest", "anthropic", 200, 812000)]
    rid1 = (ms - 2).to_bytes(6, "big") + os.urandom(10)
    write_spool(cp.data / "spool", [run_record(rid0, []),
                                    run_record(rid, atts),
                                    run_record(rid1, atts[1:], "team=a")])

    def get():
        r = api.get("/runs/" + rid.hex())
        return r.status_code == 200 and r.json()
    run, _ = wait_until(get, 5, what="the run ingested")

    assert run["requested_model"] == run["model_requested"] == "fast"
    assert run["model"] == "claude-3-5-haiku-latest"
    assert run["provider"] == "anthropic"
    assert run["attempts"] == [
        {"model": "gpt-4o-mini", "provider": "openai", "status": 0,
         "latency_ms": 2000.5, "error": "timeout"},
        {"model": "gpt-4o", "provider": "openai", "status": 500,
         "latency_ms": 15.25, "error": "http_500"},
        {"model": "claude-3-5-haiku-latest", "provider": "anthropic",
         "status": 200, "latency_ms": 812, "error": None}], run["attempts"]

    # listed the same way; a run without attempts has an empty list
    runs = {r["id"]: r for r in api.list_all("/runs")}
    assert runs[rid.hex()]["attempts"] == run["attempts"]
    assert runs[rid0.hex()]["attempts"] == []
    # a record the ingest rewrites (merged tags) keeps its attempts, in order
    assert runs[rid1.hex()]["tags"] == {"team": "a"}
    assert runs[rid1.hex()]["attempts"] == run["attempts"][1:]
