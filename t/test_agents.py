"""Agent configurations: model_config.yaml import and export through
/api/v1/agents and `torrix-cp agents import|export`, validation errors with
line numbers, and the snapshot "agents" database."""

import re
import shutil
import struct
import subprocess

import pytest

from torrix import assert_api_error

VALID = """\
# three agents, both tier layouts
agents:
  - agent_id: planner
    name: Planner
    role: planning
    normal: gpt-4o-mini
    heavy: gpt-4o
    max: o1
  - id: coder
    models:
      normal: gpt-4.1-mini
      heavy: 'gpt-4.1'
  - agent_id: reviewer.v2
    name: "null"
    role: 'yes'
    max: "anthropic/claude-opus-4-x"
"""

YAML_HDR = {"Content-Type": "application/yaml"}

TLV_TAGS = {1: "agent_id", 2: "name", 3: "role", 4: "normal", 5: "heavy",
            6: "max"}


def imp(api, text, replace=None, headers=YAML_HDR):
    path = "/agents/import"
    if replace is not None:
        path += "?replace=" + ("true" if replace else "false")
    return api.post(path, text, headers=dict(headers))


def agents(api):
    return {a["agent_id"]: a for a in api.list_all("/agents")}


def export(api):
    r = api.get("/agents/export")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/yaml"), r.headers
    return r.text


def state(api):
    """Everything an import may change: the agents and the export."""
    return agents(api), export(api)


def snapshot_agents(data):
    """The snapshot "agents" db decoded: {id: {field: value}}."""
    if shutil.which("mdb_dump") is None:
        pytest.skip("mdb_dump (lmdb-utils) not installed")
    p = subprocess.run(["mdb_dump", "-s", "agents", str(data / "snapshot")],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    body = lines[lines.index("HEADER=END") + 1:lines.index("DATA=END")]
    out = {}
    for k, v in zip(body[0::2], body[1::2]):
        key = bytes.fromhex(k.strip()).decode()
        val = bytes.fromhex(v.strip())
        rec, pos = {}, 0
        while pos < len(val):
            tag, n = struct.unpack_from("<HI", val, pos)
            pos += 6
            rec[TLV_TAGS.get(tag, tag)] = val[pos:pos + n].decode()
            pos += n
        out[key] = rec
    return out


def test_import_list_get_export_roundtrip(cp):
    api = cp.api
    r = imp(api, VALID)
    assert r.status_code == 200, r.text
    j = r.json()
    assert (j["imported"], j["created"], j["updated"], j["deleted"]) == \
        (3, 3, 0, 0), j
    assert [a["agent_id"] for a in j["agents"]] == \
        ["planner", "coder", "reviewer.v2"]

    got = agents(api)
    assert set(got) == {"planner", "coder", "reviewer.v2"}
    p = got["planner"]
    assert (p["name"], p["role"], p["normal"], p["heavy"], p["max"]) == \
        ("Planner", "planning", "gpt-4o-mini", "gpt-4o", "o1"), p
    assert p["created_at"] and p["updated_at"]
    c = api.ok("GET", "/agents/coder")
    assert (c["name"], c["role"], c["normal"], c["heavy"], c["max"]) == \
        ("coder", None, "gpt-4.1-mini", "gpt-4.1", None), c
    rv = got["reviewer.v2"]
    assert (rv["name"], rv["role"], rv["max"]) == \
        ("null", "yes", "anthropic/claude-opus-4-x"), rv
    assert_api_error(api.get("/agents/nobody"), 404)

    # the export imports back (replacing) to exactly the same agents
    text = export(api)
    assert "agent_id: planner" in text, text
    r = imp(api, text, replace=True)
    assert r.status_code == 200, r.text
    j = r.json()
    assert (j["imported"], j["created"], j["updated"], j["unchanged"],
            j["deleted"]) == (3, 0, 0, 3, 0), j
    assert agents(api) == got
    assert export(api) == text

    # a change is an update
    r = imp(api, VALID.replace("heavy: gpt-4o\n", "heavy: gpt-4.1\n"))
    j = r.json()
    assert (j["created"], j["updated"], j["unchanged"]) == (0, 1, 2), j
    assert agents(api)["planner"]["heavy"] == "gpt-4.1"

    audit = [e for e in api.list_all("/audit")
             if e.get("target_type") == "agents"]
    assert [e["action"] for e in audit] == ["agents.import"] * 3, audit
    assert {"created": [None, 3]}.items() <= \
        min(audit, key=lambda e: e["seq"])["diff"].items(), audit


def test_snapshot_gets_the_agents(cp):
    api = cp.api
    assert imp(api, VALID).status_code == 200
    snap = snapshot_agents(cp.data)
    assert snap["planner"] == {"agent_id": "planner", "name": "Planner",
                               "role": "planning", "normal": "gpt-4o-mini",
                               "heavy": "gpt-4o", "max": "o1"}, snap
    assert snap["coder"] == {"agent_id": "coder", "name": "coder",
                             "normal": "gpt-4.1-mini", "heavy": "gpt-4.1"}
    api.ok("DELETE", "/agents/coder")
    assert set(snapshot_agents(cp.data)) == {"planner", "reviewer.v2"}


def test_json_body(cp):
    api = cp.api
    r = api.post("/agents/import", {"yaml": VALID})
    assert r.status_code == 200, r.text
    assert set(agents(api)) == {"planner", "coder", "reviewer.v2"}
    # a JSON document is YAML too
    r = api.post("/agents/import", {"agents": [
        {"agent_id": "js", "normal": "gpt-4o"}]})
    assert r.status_code == 200, r.text
    assert agents(api)["js"]["normal"] == "gpt-4o"
    e = assert_api_error(api.post("/agents/import", {"yaml": 5}), 400)
    assert "yaml" in e["message"]


BAD = [
    # (file, line, message regex)
    ("agents:\n  - agent_id: a\n    normal: gpt-4o\n   heavy: o1\n",
     4, r"^line 4, column \d+: "),
    ("agents:\n  - agent_id: a\n    normal: [gpt-4o\n",
     None, r"^line \d+, column \d+: "),
    ("agents:\n  - agent_id: a\n    normal: gpt-4o\n    nromal: o1\n",
     4, r'^line 4: unknown key "nromal"'),
    ("agents:\n  - agent_id: a\n    normal: gpt-4o\n  - id: b\n"
     "    heavy: o1\n  - agent_id: a\n    max: o1\n",
     6, r'^line 6: duplicate agent_id "a" \(first at line 2\)$'),
    ("agents:\n  - name: x\n    normal: gpt-4o\n",
     2, r"^line 2: agent without agent_id"),
    ("agents:\n  - agent_id: a b\n    normal: gpt-4o\n",
     2, r'^line 2: bad agent_id "a b"'),
    ("agents:\n  - agent_id: a\n    role: x\n",
     2, r'^line 2: agent "a" has no model'),
    ("agents:\n  - agent_id: a\n    normal: gpt-4o\n    models:\n"
     "      normal: o1\n",
     5, r'^line 5: tier "normal" given twice'),
    ("agents:\n  - agent_id: a\n    models:\n      huge: o1\n",
     4, r'^line 4: unknown key "huge" in models'),
    ("agents:\n  - agent_id: a\n    normal: {x: 1}\n",
     3, r'^line 3: "normal" must be a string'),
    ("agent:\n  - agent_id: a\n", 1, r'^line 1: unknown key "agent"'),
    ("- agent_id: a\n", 1, r"^line 1: expected a mapping"),
    ("", 1, r"^line 1: empty document"),
    ("agents: []\n---\nagents: []\n", 3, r"^line 3: only one YAML document"),
    ("agents:\n  - agent_id: a\n    normal: \"gpt\x01\"\n", 3,
     r"^line 3, column \d+: .*control characters"),
    # bounds on libyaml's slow paths (flow depth, anchors)
    ("agents: " + "[" * 50000 + "]" * 50000 + "\n", 1,
     r"^line 1: nested deeper than 8 levels"),
    ("agents:\n" + "".join("- &a%d x\n" % i for i in range(300)), 258,
     r"^line 258: more than 256 anchors and aliases"),
]


@pytest.mark.parametrize("text,line,msg", BAD)
def test_bad_files_change_nothing(cp, text, line, msg):
    api = cp.api
    assert imp(api, VALID).status_code == 200
    before = state(api)
    r = imp(api, text, replace=True)
    e = assert_api_error(r, 400)
    assert re.search(msg, e["message"]), e
    if line is not None:
        assert e["line"] == line, e
    assert state(api) == before


def test_anchors_and_aliases(cp):
    api = cp.api
    text = ("agents:\n"
            "  - agent_id: p\n"
            "    normal: &small gpt-4o-mini\n"
            "    heavy: &big gpt-4o\n"
            "  - agent_id: q\n"
            "    normal: *small\n"
            "    max: *big\n")
    assert imp(api, text).status_code == 200
    q = agents(api)["q"]
    assert (q["normal"], q["heavy"], q["max"]) == \
        ("gpt-4o-mini", None, "gpt-4o"), q


def test_unknown_model(cp):
    api = cp.api
    assert imp(api, VALID).status_code == 200
    before = state(api)
    text = ("agents:\n"
            "  - agent_id: newbie\n"
            "    normal: gpt-4o-mini\n"
            "  - agent_id: planner\n"
            "    normal: gpt-4o-mini\n"
            "    heavy: no-such-model-xyz\n")
    e = assert_api_error(imp(api, text), 400)
    assert e["message"] == ('line 6: unknown model "no-such-model-xyz" '
                            'for agent "planner" (tier heavy)'), e
    assert e["line"] == 6
    assert state(api) == before
    assert "newbie" not in snapshot_agents(cp.data)
    # an unknown provider prefix is unknown too
    e = assert_api_error(imp(api, "agents:\n  - agent_id: z\n"
                                  "    max: nosuchprovider/m\n"), 400)
    assert e["line"] == 3, e


def test_replace_and_merge(cp):
    api = cp.api

    def doc(*ids):
        return "agents:\n" + "".join(
            "  - agent_id: %s\n    normal: gpt-4o-mini\n" % i for i in ids)

    assert imp(api, doc("a", "b")).json()["created"] == 2
    j = imp(api, doc("b", "c")).json()
    assert (j["created"], j["unchanged"], j["deleted"]) == (1, 1, 0), j
    assert set(agents(api)) == {"a", "b", "c"}
    j = imp(api, doc("c"), replace=False).json()
    assert j["deleted"] == 0 and set(agents(api)) == {"a", "b", "c"}
    j = imp(api, doc("c"), replace=True).json()
    assert (j["imported"], j["deleted"]) == (1, 2), j
    assert set(agents(api)) == {"c"}
    assert set(snapshot_agents(cp.data)) == {"c"}
    j = imp(api, "agents: []\n", replace=True).json()
    assert j["deleted"] == 1 and agents(api) == {}
    assert export(api).rstrip().endswith("agents: []")
    e = assert_api_error(api.post("/agents/import?replace=maybe", doc("x"),
                                  headers=dict(YAML_HDR)), 400)
    assert "replace" in e["message"]


def test_delete(cp):
    api = cp.api
    assert imp(api, VALID).status_code == 200
    d = api.ok("DELETE", "/agents/planner")
    assert d["deleted"] is True and d["agent_id"] == "planner", d
    assert_api_error(api.get("/agents/planner"), 404)
    assert_api_error(api.delete("/agents/planner"), 404)
    assert set(agents(api)) == {"coder", "reviewer.v2"}
    assert "planner" not in export(api)
    audit = [e for e in api.list_all("/audit")
             if e["action"] == "agent.delete"]
    assert [e["target_id"] for e in audit] == ["planner"]


def test_too_large_body(cp):
    big = "# " + "x" * (1024 * 1024) + "\nagents: []\n"
    r = imp(cp.api, big)
    assert_api_error(r, 413)


def test_cli_import_export(cp):
    s = cp
    f = s.tmp / "model_config.yaml"
    f.write_text(VALID)

    # the daemon is running: both write the store, the CLI publishes
    p = s.cp_cli("agents", "import", f, "--data", s.data)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert b'"created":3' in p.stdout, p.stdout
    assert set(agents(s.api)) == {"planner", "coder", "reviewer.v2"}
    assert set(snapshot_agents(s.data)) == {"planner", "coder", "reviewer.v2"}

    p = s.cp_cli("agents", "export", "--data", s.data)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == export(s.api)

    before = state(s.api)
    bad = s.tmp / "bad.yaml"
    bad.write_text("agents:\n  - agent_id: a\n    normal: gpt-4o\n"
                   "    heavy: no-such-model-xyz\n")
    p = s.cp_cli("agents", "import", bad, "--data", s.data, "--replace")
    assert p.returncode == 1, p
    assert p.stderr.decode().strip() == (
        'torrix-cp: %s: line 4: unknown model "no-such-model-xyz" for agent '
        '"a" (tier heavy)' % bad), p.stderr
    bad.write_text("agents:\n  - agent_id: [a\n")
    p = s.cp_cli("agents", "import", bad, "--data", s.data)
    assert p.returncode == 1, p
    assert re.search(r": line \d+, column \d+: ", p.stderr.decode()), p.stderr
    assert state(s.api) == before

    # --replace with the daemon stopped; it resyncs the snapshot at start
    one = s.tmp / "one.yaml"
    one.write_text("agents:\n  - agent_id: solo\n    heavy: gpt-4o\n")
    s.stop_cp()
    p = s.cp_cli("agents", "import", one, "--replace", "--data", s.data)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert b'"deleted":3' in p.stdout, p.stdout
    s.start_cp()
    assert set(agents(s.api)) == {"solo"}
    assert set(snapshot_agents(s.data)) == {"solo"}

    p = s.cp_cli("agents", "import", s.tmp / "missing.yaml", "--data", s.data)
    assert p.returncode == 1 and b"missing.yaml" in p.stderr, p
    p = s.cp_cli("agents", "frobnicate")
    assert p.returncode == 2 and b"usage" in p.stderr, p
