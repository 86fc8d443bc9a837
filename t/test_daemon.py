"""torrix-cp itself: the admin key, restarts, clean exit, priority."""

import os

import pytest


def test_admin_key_created_once(cp_stopped):
    s = cp_stopped
    s.start_cp()
    key = s.admin_key
    mode = (s.data / "admin.key").stat().st_mode & 0o777
    assert mode == 0o600, oct(mode)
    assert key in s.cp_output(0), "first start prints the admin key"
    assert s.api.get("/keys").status_code == 200
    s.stop_cp()

    s.start_cp()
    assert s.admin_key == key
    assert key not in s.cp_output(1)
    assert s.api.get("/keys").status_code == 200
    k = s.api.create_key()
    s.stop_cp()

    s.start_cp()
    assert s.api.ok("GET", "/keys/" + k["id"])["name"] == k["name"]
    assert (s.data / "admin.key").stat().st_mode & 0o777 == 0o600


def test_state_survives_restart(stack):
    k = stack.api.create_key()
    stack.stop_cp()
    stack.start_cp()
    assert stack.api.ok("GET", "/keys/" + k["id"])["status"] == "active"
    assert stack.chat(k["key"]).status_code == 200


def test_gateway_serves_while_cp_down(stack):
    k = stack.api.create_key()
    stack.stop_cp()
    assert stack.chat(k["key"]).status_code == 200
    assert stack.chat("sk-torrix-" + "Z" * 43).status_code == 401
    stack.start_cp()



def _nice(pid):
    # field 19 of /proc/PID/stat, counted after the ")" that ends comm
    stat = open("/proc/%d/stat" % pid).read()
    return int(stat[stat.rindex(")") + 2:].split()[16])


def test_runs_niced_below_nginx(cp_stopped):
    """torrix-cp yields the CPU to the nginx workers: nice 10 by default,
    the `nice` option sets it, out of range is refused at start."""
    s = cp_stopped
    if os.getpriority(os.PRIO_PROCESS, 0) > 3:
        pytest.skip("pytest itself runs niced above 3")
    s.start_cp()
    assert _nice(s.cp_proc.pid) == 10
    assert s.api.get("/keys").status_code == 200
    s.stop_cp()

    s.start_cp("--nice", "3")
    assert _nice(s.cp_proc.pid) == 3
    s.stop_cp()

    out = s.cp_cli("--data", s.data, "--nice", "20", "--foreground")
    assert out.returncode != 0
    assert b"nice" in out.stderr, out.stderr
