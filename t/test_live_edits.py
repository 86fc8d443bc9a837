"""Key edits reach the gateway within 1 s, with no reload."""

import contextlib

from torrix import assert_openai_error


@contextlib.contextmanager
def no_reload(stack):
    master, workers = stack.nginx_pid, stack.workers()
    yield
    assert stack.nginx_pid == master
    assert stack.workers() == workers, "nginx workers changed"
    log = stack.error_log()
    assert "reconfiguring" not in log and "SIGHUP" not in log


def test_revoke_within_1s(stack):
    k = stack.api.create_key()
    assert stack.chat(k["key"]).status_code == 200
    with no_reload(stack):
        r = stack.api.delete("/keys/" + k["id"])
        assert r.status_code in (200, 204), r.text
        took = stack.wait_status(lambda: stack.chat(k["key"]), 401, 1.0)
        assert took < 1.0
        # stays revoked on every worker (fresh connections)
        for _ in range(6):
            assert_openai_error(stack.chat(k["key"]), 401)


def test_new_key_works_within_1s(stack):
    with no_reload(stack):
        k = stack.api.create_key()
        stack.wait_status(lambda: stack.chat(k["key"]), 200, 1.0)


def test_allowlist_edit_within_1s(stack):
    k = stack.api.create_key(allowed_models=["gpt-4o"])
    assert stack.chat(k["key"], "gpt-4o").status_code == 200
    assert_openai_error(stack.chat(k["key"], "gpt-4o-mini"), 403)
    with no_reload(stack):
        stack.api.ok("PATCH", "/keys/" + k["id"],
                     {"allowed_models": ["gpt-4o-mini"]})
        stack.wait_status(lambda: stack.chat(k["key"], "gpt-4o-mini"), 200,
                          1.0)
        stack.wait_status(lambda: stack.chat(k["key"], "gpt-4o"), 403, 1.0)
        for _ in range(4):
            assert stack.chat(k["key"], "gpt-4o-mini").status_code == 200
            assert stack.chat(k["key"], "gpt-4o").status_code == 403


def test_access_edit_within_1s(stack):
    k = stack.api.create_key()
    with no_reload(stack):
        stack.api.ok("PATCH", "/keys/" + k["id"], {"access": "read"})
        stack.wait_status(lambda: stack.chat(k["key"]), 403, 1.0)
        stack.api.ok("PATCH", "/keys/" + k["id"], {"access": "full"})
        stack.wait_status(lambda: stack.chat(k["key"]), 200, 1.0)


def test_unexpire_within_1s(stack):
    k = stack.api.create_key(expires_at="2020-01-01T00:00:00Z")
    assert_openai_error(stack.chat(k["key"]), 401)
    with no_reload(stack):
        stack.api.ok("PATCH", "/keys/" + k["id"], {"expires_at": None})
        stack.wait_status(lambda: stack.chat(k["key"]), 200, 1.0)
