"""Budget alerts: soft threshold and hard cap fire one webhook each per scope
and window, retried until delivered, never repeated across a restart."""

import base64
import hashlib
import hmac
import http.server
import json
import threading

import pytest

from torrix import free_port, wait_until

RUN_COST = 0.00000345


class Receiver:
    """A local webhook receiver recording every POST; the first `fail`
    requests get a 500."""

    def __init__(self, fail=0):
        self.posts = []
        self.fail = fail
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                outer.posts.append((dict(self.headers), body))
                code = 500 if outer.fail > 0 else 200
                outer.fail -= 1
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1",
                                                       self.port), H)
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/hook" % self.port

    def events(self):
        return [json.loads(b) for _, b in self.posts if b.startswith(b"{")
                and b"\"event\"" in b]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def spend_until(stack, key, n):
    for _ in range(n):
        assert stack.chat(key, extra={"max_tokens": 5}).status_code in \
            (200, 429)


def test_soft_and_hard_alerts_once(stack, receiver):
    hook = stack.api.ok("POST", "/webhooks",
                        {"url": receiver.url, "secret": "s3cr3t-hook"})
    assert hook["secret_set"] is True and "secret" not in hook
    # 8 runs cost $0.0000276: soft at 50% of $0.00004 = $0.00002 (6 runs)
    k = stack.api.create_key(daily_cap_usd=0.00004, soft_alert_pct=50)
    spend_until(stack, k["key"], 7)
    ev = wait_until(lambda: [e for e in receiver.events()
                             if e["scope_id"] == k["id"]] or None, 5,
                    what="soft alert")[0]
    assert [e["event"] for e in ev] == ["budget_threshold"], ev
    soft = ev[0]
    assert soft["period"] == "daily" and soft["scope"] == "key"
    assert abs(soft["threshold_usd"] - 0.00002) < 1e-12, soft
    assert soft["spent_usd"] >= 0.00002, soft
    # signed with the webhook's secret
    headers, body = receiver.posts[0]
    sig = {k.lower(): v for k, v in headers.items()}["x-torrix-signature"]
    assert sig == "sha256=" + hmac.new(b"s3cr3t-hook", body,
                                       hashlib.sha256).hexdigest()
    # spend until the cap trips: one budget_exceeded, then nothing more
    spend_until(stack, k["key"], 8)
    wait_until(lambda: len([e for e in receiver.events()
                            if e["event"] == "budget_exceeded"]) == 1, 5,
               what="hard alert")
    spend_until(stack, k["key"], 3)
    alerts = wait_until(lambda: (lambda a: a if len(a) == 2 and all(
        d["status"] == "delivered" for x in a for d in x["deliveries"])
        else None)(stack.api.ok("GET", "/alerts?scope_id=" + k["id"])
                   ["data"]), 5, what="2 delivered alerts")[0]
    assert {a["level"] for a in alerts} == {"soft", "hard"}
    # a restart neither loses nor repeats an alert
    stack.stop_cp()
    stack.start_cp()
    spend_until(stack, k["key"], 2)
    import time
    time.sleep(1.0)
    assert len(receiver.events()) == 2, receiver.events()
    assert len(stack.api.ok("GET", "/alerts?scope_id=" + k["id"])
               ["data"]) == 2
    # the secret never comes back
    assert "s3cr3t-hook" not in json.dumps(
        stack.api.ok("GET", "/webhooks/" + hook["id"]))


def test_delivery_is_retried(stack):
    r = Receiver(fail=1)
    try:
        stack.api.ok("POST", "/webhooks", {"url": r.url,
                                           "events": ["budget_exceeded"]})
        k = stack.api.create_key(daily_cap_usd=0.00001)
        spend_until(stack, k["key"], 5)
        a = wait_until(lambda: (lambda d: d if d and d[0]["deliveries"][0]
                                ["status"] == "delivered" else None)(
            stack.api.ok("GET", "/alerts?scope_id=" + k["id"])["data"]),
            8, what="delivered after a retry")[0]
        d = a[0]["deliveries"][0]
        assert d["attempts"] == 2 and d["last_status"] == 200, d
        assert len(r.events()) == 2       # the 500 and the retry
        assert r.events()[0]["alert_id"] == r.events()[1]["alert_id"]
    finally:
        r.close()


def test_slack_format(stack, receiver):
    stack.api.ok("POST", "/webhooks", {"url": receiver.url,
                                       "format": "slack"})
    usr = stack.api.create("users", email="s@example.com", name="s",
                           weekly_cap_usd=0.00001)
    k = stack.api.create_key(user_id=usr["id"])
    spend_until(stack, k["key"], 5)
    wait_until(lambda: any(b"\"blocks\"" in b for _, b in receiver.posts),
               5, what="a Slack message")
    msg = json.loads([b for _, b in receiver.posts
                      if b"\"blocks\"" in b][-1])
    assert "text" in msg and usr["id"] in msg["text"], msg
    assert msg["blocks"][0]["type"] == "section"


HOOK_SECRET = "whsec-PLAINTEXT-0123456789abcdef-sealed"


def signed_event(stack, receiver, key, secret):
    """Spends `key` past its cap; returns the event its alert delivered,
    asserting the delivery carries the signature of `secret`."""
    spend_until(stack, key["key"], 5)
    headers, body = wait_until(
        lambda: next(((h, b) for h, b in receiver.posts
                      if key["id"].encode() in b), None),
        8, what="alert of %s" % key["id"])[0]
    sig = {k.lower(): v for k, v in headers.items()}["x-torrix-signature"]
    assert sig == "sha256=" + hmac.new(secret.encode(), body,
                                       hashlib.sha256).hexdigest()
    return json.loads(body)


def test_webhook_secret_sealed(stack, receiver):
    """The signing secret is sealed in the store (master key, AD = the
    webhook id), never on disk in plaintext; deliveries stay signed across
    an edit, a master key rotation and a restart."""
    from test_vault import assert_absent, mdb_dump_all, parse_key_file, \
        unseal

    stack.secrets.add(HOOK_SECRET)
    hook = stack.api.ok("POST", "/webhooks", {"url": receiver.url,
                                              "events": ["budget_exceeded"],
                                              "secret": HOOK_SECRET})
    assert hook["secret_set"] is True and "secret" not in hook

    def stored():
        rec = mdb_dump_all(stack.data / "store")["webhooks"][
            hook["id"].encode()]
        j = json.loads(rec)
        assert "secret" not in j and "secret_sealed" in j, j
        return j["secret_sealed"]

    sealed = stored()
    mk = parse_key_file(stack.data / "master.key")
    assert unseal(mk, hook["id"], base64.b64decode(sealed)) == \
        HOOK_SECRET.encode()
    # bound to the webhook id
    assert unseal(mk, "whk_other", base64.b64decode(sealed)) is None
    assert_absent(stack.data, HOOK_SECRET)

    k1 = stack.api.create_key(daily_cap_usd=0.00001)
    assert signed_event(stack, receiver, k1, HOOK_SECRET)["scope_id"] == \
        k1["id"]

    # an edit that does not touch the secret keeps it
    h = stack.api.ok("PATCH", "/webhooks/" + hook["id"], {"name": "ops"})
    assert h["secret_set"] is True and h["name"] == "ops"
    assert stored() == sealed
    audit = stack.api.get("/audit").text
    assert HOOK_SECRET not in audit and sealed not in audit

    # rotation re-seals it under the new key, in the same txn
    r = stack.api.post("/vault/rotate")
    assert r.status_code == 200, r.text
    assert r.json()["resealed"] >= 1
    mk2 = parse_key_file(stack.data / "master.key")
    stack.secrets.update({mk.hex(), mk2.hex()})
    sealed2 = stored()
    assert sealed2 != sealed
    assert unseal(mk, hook["id"], base64.b64decode(sealed2)) is None
    assert unseal(mk2, hook["id"], base64.b64decode(sealed2)) == \
        HOOK_SECRET.encode()
    k2 = stack.api.create_key(daily_cap_usd=0.00001)
    signed_event(stack, receiver, k2, HOOK_SECRET)

    # and after a restart with the rotated key
    stack.stop_cp()
    stack.start_cp()
    k3 = stack.api.create_key(daily_cap_usd=0.00001)
    signed_event(stack, receiver, k3, HOOK_SECRET)
    assert_absent(stack.data, HOOK_SECRET)

    # a new secret replaces it; null removes it
    h = stack.api.ok("PATCH", "/webhooks/" + hook["id"],
                     {"secret": HOOK_SECRET + "-2"})
    stack.secrets.add(HOOK_SECRET + "-2")
    assert h["secret_set"] is True and stored() != sealed2
    k4 = stack.api.create_key(daily_cap_usd=0.00001)
    signed_event(stack, receiver, k4, HOOK_SECRET + "-2")
    h = stack.api.ok("PATCH", "/webhooks/" + hook["id"], {"secret": None})
    assert h["secret_set"] is False
    j = json.loads(mdb_dump_all(stack.data / "store")["webhooks"][
        hook["id"].encode()])
    assert "secret" not in j and "secret_sealed" not in j, j
