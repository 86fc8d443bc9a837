"""Sampled runs and PII masking of stored runs (issue 3).

sample_rate (instance setting) and x-torrix-sample decide whether a run
keeps its request and response bodies; errors keep them whatever the rate.
With pii_masking on (instance, org or project) torrix-cp replaces PII in
the stored bodies by labels before anything is written to the store; the
request the provider receives is never changed by it."""

import json

from torrix import assert_anthropic_error, assert_openai_error, wait_until


def run_of(stack, r):
    return stack.run(r.headers["x-torrix-run-id"])


def has_bodies(run):
    return bool(run.get("request_body")) and bool(run.get("response_body"))


def no_bodies(run):
    return not run.get("request_body") and not run.get("response_body")


def set_rate(stack, key, rate):
    """PATCH sample_rate and wait until the gateway applies it (within 1 s,
    as every setting)."""
    stack.api.ok("PATCH", "/settings", {"sample_rate": rate})
    assert stack.api.ok("GET", "/settings")["sample_rate"] == rate

    def applied():
        run = run_of(stack, stack.chat(key))
        return run["flags"]["sampled"] == (rate == 1)
    wait_until(applied, 2, 0.05, "sample_rate %s applied" % rate)


def test_sample_rate_0_keeps_errors_only(stack):
    k = stack.api.create_key()
    set_rate(stack, k["key"], 0)
    r = stack.chat(k["key"])
    assert r.status_code == 200
    run = run_of(stack, r)
    assert run["flags"]["sampled"] is False, run
    assert no_bodies(run), run
    # the metadata is all there
    assert run["tokens"]["input"] == 11 and run["cost_usd"] > 0, run
    # an upstream error keeps both bodies, whole
    r = stack.chat(k["key"], headers={"x-mock-status": "500"})
    assert r.status_code == 500
    run = run_of(stack, r)
    assert run["flags"]["error"] is True
    assert json.loads(run["request_body"])["model"] == "gpt-4o-mini"
    assert run["response_body"] == r.text
    # a client error answered by the provider too
    r = stack.messages(k["key"], headers={"x-mock-status": "400"})
    assert r.status_code == 400
    run = run_of(stack, r)
    assert has_bodies(run) and run["response_body"] == r.text, run
    # and a streamed success is not kept
    r = stack.chat(k["key"], extra={"stream": True})
    assert r.status_code == 200
    assert no_bodies(run_of(stack, r))


def test_sample_rate_1_keeps_all(stack):
    k = stack.api.create_key()
    set_rate(stack, k["key"], 1)
    r = stack.chat(k["key"])
    run = run_of(stack, r)
    assert run["flags"]["sampled"] is True
    assert json.loads(run["request_body"]) == stack.mock.requests[-1].json()
    assert run["response_body"] == r.text
    r = stack.messages(k["key"], extra={"stream": True})
    run = run_of(stack, r)
    assert run["flags"]["sampled"] is True and run["response_body"] == r.text


def test_sample_header_overrides_rate(stack):
    k = stack.api.create_key()
    set_rate(stack, k["key"], 0)
    r = stack.chat(k["key"], headers={"x-torrix-sample": "1"})
    run = run_of(stack, r)
    assert run["flags"]["sampled"] is True and has_bodies(run), run
    set_rate(stack, k["key"], 1)
    r = stack.chat(k["key"], headers={"x-torrix-sample": "0"})
    run = run_of(stack, r)
    assert run["flags"]["sampled"] is False and no_bodies(run), run
    # fractions are valid
    for v in ("0.5", "0", "1", "1.0", "0.000"):
        r = stack.chat(k["key"], headers={"x-torrix-sample": v})
        assert r.status_code == 200, (v, r.text)


def test_sample_header_invalid(stack):
    k = stack.api.create_key()
    n = len(stack.mock.requests)
    for v in ("2", "abc", "-0.1", "1.5", "0x1"):
        r = stack.chat(k["key"], headers={"x-torrix-sample": v})
        e = assert_openai_error(r, 400)
        assert "x-torrix-sample" in e["message"], e
        assert r.headers.get("x-torrix-run-id")
    r = stack.messages(k["key"], headers={"x-torrix-sample": "abc"})
    assert_anthropic_error(r, 400)
    assert len(stack.mock.requests) == n      # none went upstream


def test_sampled_body_bounded_and_flagged(stack):
    """A sampled stream larger than the capture bound is stored cut and
    flagged truncated; its usage (at the very end) is still metered."""
    k = stack.api.create_key()
    r = stack.chat(k["key"], extra={"stream": True},
                   headers={"x-mock-chunks": "2000"})
    assert r.status_code == 200 and len(r.content) > 200000
    run = run_of(stack, r)
    assert run["flags"]["sampled"] is True
    assert run["flags"]["truncated"] is True and run["truncated"] is True
    assert 0 < len(run["response_body"]) < len(r.content)
    assert r.text.startswith(run["response_body"])
    assert run["tokens"] == {"input": 11, "output": 2000}, run
    assert run["flags"]["estimated"] is False


# -- PII masking -----------------------------------------------------------------

EMAIL = "jane.roe.probe@example.org"
EMAIL2 = "j.doe@example.net"
PHONE = "+1 415 555 2671"
CARD = "4111 1111 1111 1111"
IBAN = "GB82 WEST 1234 5698 7654 32"
SECRET = "sk-proj-Zx81pQ7rTu22Lm90aBcDeFgHiJkLmNoPq"
RAW = (EMAIL, EMAIL2, PHONE, CARD, IBAN, SECRET)
PROMPT = ("Contact %s (or %s), phone %s. Card %s, IBAN %s. My key is %s. "
          "Again: %s." % (EMAIL, EMAIL2, PHONE, CARD, IBAN, SECRET, EMAIL))


def pii_chat(stack, key, prompt=PROMPT, **kw):
    r = stack.chat(key, extra={"messages": [{"role": "user",
                                             "content": prompt}]}, **kw)
    assert r.status_code in (200, 500, 503), r.text
    # the provider gets the request as the client sent it: not masked
    up = stack.mock.requests[-1].json()["messages"][0]["content"]
    assert up == prompt
    return run_of(stack, r)


def stored_prompt(run):
    return json.loads(run["request_body"])["messages"][0]["content"]


def test_pii_masking_instance(stack):
    k = stack.api.create_key()
    before = pii_chat(stack, k["key"])
    assert stored_prompt(before) == PROMPT      # off: stored as sent
    stack.api.ok("PATCH", "/settings", {"pii_masking": True})
    run = pii_chat(stack, k["key"])
    got = stored_prompt(run)
    assert got == ("Contact [EMAIL_1] (or [EMAIL_2]), phone [PHONE_1]. "
                   "Card [CARD_1], IBAN [IBAN_1]. My key is [SECRET_1]. "
                   "Again: [EMAIL_1]."), got
    for raw in RAW:
        assert raw not in run["request_body"], raw
        assert raw not in json.dumps(run), raw
    # errors are stored whole, and masked too
    err = pii_chat(stack, k["key"], headers={"x-mock-status": "500"})
    assert err["flags"]["error"] and "[EMAIL_1]" in err["request_body"]
    assert EMAIL not in err["request_body"]
    # applies to new runs only: the earlier run is as it was
    assert stored_prompt(stack.run(before["id"])) == PROMPT


def test_pii_raw_values_never_reach_the_store(stack):
    """With masking on from the start, the raw values are not in the
    store's bytes at all."""
    stack.api.ok("PATCH", "/settings", {"pii_masking": True})
    k = stack.api.create_key()
    ids = [pii_chat(stack, k["key"])["id"] for _ in range(3)]
    pii_chat(stack, k["key"], headers={"x-mock-status": "503"})
    pii_chat(stack, k["key"], headers={"x-torrix-tags": "mail=x"})
    for i in ids:
        assert "[EMAIL_1]" in stack.run(i)["request_body"]
    data = (stack.data / "store" / "data.mdb").read_bytes()
    for raw in RAW:
        assert raw.encode() not in data, raw
    assert b"[EMAIL_1]" in data


def test_pii_checksums(stack):
    """Cards need a valid Luhn digit, IBANs a valid mod-97: numbers that
    fail them are not labelled as cards or IBANs."""
    stack.api.ok("PATCH", "/settings", {"pii_masking": True})
    k = stack.api.create_key()
    prompt = ("good %s bad 4111 1111 1111 1112; iban %s bad "
              "GB82 WEST 1234 5698 7654 33" % (CARD, IBAN))
    got = stored_prompt(pii_chat(stack, k["key"], prompt))
    assert got.startswith("good [CARD_1] bad "), got
    assert "[CARD_2]" not in got and "[IBAN_2]" not in got, got
    assert "iban [IBAN_1] bad " in got, got
    assert CARD not in got and IBAN not in got


def test_pii_custom_rule(stack):
    stack.api.ok("PATCH", "/settings", {
        "pii_masking": True, "pii_rules": {"EMPLOYEE": "EMP-[0-9]{6}"}})
    assert stack.api.ok("GET", "/settings")["pii_rules"] == \
        {"EMPLOYEE": "EMP-[0-9]{6}"}
    k = stack.api.create_key()
    got = stored_prompt(pii_chat(
        stack, k["key"], "ids EMP-123456, EMP-654321, EMP-123456 and %s"
        % EMAIL))
    assert got == "ids [EMPLOYEE_1], [EMPLOYEE_2], [EMPLOYEE_1] and " \
        "[EMAIL_1]", got
    # a bad regex is refused, and nothing changes
    for rules in ({"BAD": "("}, {"BAD": 5}, {"": "x"}):
        r = stack.api.patch("/settings", {"pii_rules": rules})
        assert r.status_code == 400, (rules, r.text)
    assert stack.api.ok("GET", "/settings")["pii_rules"] == \
        {"EMPLOYEE": "EMP-[0-9]{6}"}


def test_pii_masking_per_project_and_org(stack):
    org = stack.api.create("orgs", name="masked-org", pii_masking=True)
    masked = stack.api.create("projects", slug="masked", name="m",
                              pii_masking=True)
    in_org = stack.api.create("projects", slug="in-org", name="o",
                              org_id=org["id"])
    plain = stack.api.create("projects", slug="plain", name="p")
    keys = {p["slug"]: stack.api.create_key(project_id=p["id"])["key"]
            for p in (masked, in_org, plain)}
    assert stack.api.ok("GET", "/settings")["pii_masking"] is False
    for slug, want_masked in (("masked", True), ("in-org", True),
                              ("plain", False)):
        got = stored_prompt(pii_chat(stack, keys[slug]))
        if want_masked:
            assert EMAIL not in got and "[EMAIL_1]" in got, (slug, got)
        else:
            assert got == PROMPT, (slug, got)
    # switching the project off: its new runs are stored as sent
    stack.api.ok("PATCH", "/projects/" + masked["id"],
                 {"pii_masking": False})
    assert stored_prompt(pii_chat(stack, keys["masked"])) == PROMPT
