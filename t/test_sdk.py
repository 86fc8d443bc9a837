"""The real OpenAI (openai@6) and Anthropic SDKs from npm against the
gateway: chat completions (JSON and stream, with and without include_usage)
and messages (JSON and stream) succeed, and their runs are recorded with
tokens and cost.

t/sdk/ has package.json and package-lock.json; `npm ci` installs them into
t/sdk/node_modules (git-ignored) when it is missing.  Skipped, with the
reason, when node or npm is absent or the install fails (no network)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from torrix import run_tokens

SDK = Path(__file__).resolve().parent / "sdk"


def ensure_sdks():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node or npm not installed")
    mods = SDK / "node_modules"
    if not ((mods / "openai").is_dir() and
            (mods / "@anthropic-ai" / "sdk").is_dir()):
        try:
            p = subprocess.run([npm, "ci", "--no-audit", "--no-fund"],
                               cwd=SDK, capture_output=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip("npm ci timed out (no network?)")
        if p.returncode != 0:
            pytest.skip("npm ci failed (no network?): %s" %
                        p.stderr.decode(errors="replace")[-500:])
    return node


def test_sdks(stack):
    node = ensure_sdks()
    k = stack.api.create_key()
    p = subprocess.run([node, "sdk_calls.mjs", stack.url, k["key"]],
                       cwd=SDK, capture_output=True, timeout=120)
    assert p.returncode == 0, (p.stdout, p.stderr)
    out = json.loads(p.stdout.decode().strip().splitlines()[-1])
    res = {x["name"]: x for x in out["results"]}
    for name, x in res.items():
        assert x["ok"], (name, x.get("error"))

    chat = res["openai.chat"]
    assert chat["text"] == "hello from mock"
    assert chat["usage"]["prompt_tokens"] == 11
    stream = res["openai.chat.stream"]
    assert stream["text"] == "tok0 tok1 tok2 ", stream
    # include_usage was injected for the gateway, not for the SDK's user
    assert stream["usage_chunks"] == 0, stream
    assert res["openai.chat.stream.include_usage"]["usage"][
        "completion_tokens"] == 3
    assert res["anthropic.messages"]["text"] == "hello from mock"
    assert res["anthropic.messages.stream"]["text"] == "tok0 tok1 tok2 "
    assert res["anthropic.messages.stream"]["usage"]["output_tokens"] == 3
    bad = res["openai.bad_key"]
    assert bad["status"] == 401 and bad["type"] == "AuthenticationError", bad

    want = {"openai.chat": (11, 3, False),
            "openai.chat.stream": (11, 3, True),
            "openai.chat.stream.include_usage": (11, 3, False),
            "anthropic.messages": (11, 3, False),
            "anthropic.messages.stream": (11, 3, False)}
    for name, (tin, tout, injected) in want.items():
        rid = res[name]["run_id"]
        assert rid, (name, res[name])
        run = stack.run(rid)
        t = run_tokens(run)
        assert (t["input"], t["output"]) == (tin, tout), (name, run)
        assert run["status"] == 200 and run["cost_usd"] > 0, run
        assert run["flags"]["usage_injected"] is injected, (name, run)
        assert not run["flags"]["estimated"] and \
            not run["flags"]["cancelled"], run
    # the SDKs' own headers reached the provider; the Torrix key did not
    for req in stack.mock.requests:
        assert k["key"] not in req.raw()
