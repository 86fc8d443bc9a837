"""POST /keys/{id}/rotate: both secrets work during the grace window."""

import time

from torrix import assert_openai_error


def _rotate(stack, k, grace):
    r = stack.api.post("/keys/%s/rotate" % k["id"], {"grace_seconds": grace})
    assert r.status_code in (200, 201), r.text
    n = r.json()
    assert n["id"] == k["id"], n
    assert n["key"].startswith("sk-torrix-") and n["key"] != k["key"], n
    assert n["key_prefix"] == n["key"][:14]
    return n


def test_rotate_with_grace(stack):
    k = stack.api.create_key()
    assert stack.chat(k["key"]).status_code == 200
    t0 = time.monotonic()
    n = _rotate(stack, k, 3)
    assert n.get("previous_key_expires_at"), n
    stack.wait_status(lambda: stack.chat(n["key"]), 200, 1.0)
    # the old secret keeps working for the grace period
    while time.monotonic() - t0 < 2.0:
        assert stack.chat(k["key"]).status_code == 200
        time.sleep(0.1)
    stack.wait_status(lambda: stack.chat(k["key"]), 401, 6.0 -
                      (time.monotonic() - t0))
    assert time.monotonic() - t0 >= 2.9
    assert_openai_error(stack.chat(k["key"]), 401)
    assert stack.chat(n["key"]).status_code == 200
    g = stack.api.ok("GET", "/keys/" + k["id"])
    assert g["status"] == "active" and g["key_prefix"] == n["key"][:14], g
    assert g.get("rotated_at"), g


def test_rotate_without_grace(stack):
    k = stack.api.create_key()
    assert stack.chat(k["key"]).status_code == 200
    n = _rotate(stack, k, 0)
    took = stack.wait_status(lambda: stack.chat(k["key"]), 401, 1.0)
    assert took < 1.0
    stack.wait_status(lambda: stack.chat(n["key"]), 200, 1.0)
    for _ in range(4):
        assert_openai_error(stack.chat(k["key"]), 401)
        assert stack.chat(n["key"]).status_code == 200


def test_rotate_twice(stack):
    k = stack.api.create_key()
    n1 = _rotate(stack, k, 0)
    n2 = _rotate(stack, k, 0)
    stack.wait_status(lambda: stack.chat(n2["key"]), 200, 1.0)
    stack.wait_status(lambda: stack.chat(n1["key"]), 401, 1.0)
    assert stack.chat(k["key"]).status_code == 401


def test_rotate_revoked_or_unknown(stack):
    k = stack.api.create_key()
    stack.api.delete("/keys/" + k["id"])
    r = stack.api.post("/keys/%s/rotate" % k["id"], {"grace_seconds": 0})
    assert r.status_code in (400, 409), r.text
    r = stack.api.post("/keys/key_aaaaaaaaaaaaaaaaaaaa/rotate",
                       {"grace_seconds": 0})
    assert r.status_code == 404, r.text
    k2 = stack.api.create_key()
    r = stack.api.post("/keys/%s/rotate" % k2["id"], {"grace_seconds": -5})
    assert r.status_code == 400, r.text
    assert stack.chat(k2["key"]).status_code == 200
