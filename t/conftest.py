"""pytest fixtures: a mock upstream, torrix-cp alone (`cp`), or torrix-cp
and nginx with the module (`stack`), each in its own temporary directory.
After each test the processes are stopped and their logs checked; the
temporary directory is kept when the test failed."""

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mock_upstream import MockUpstream  # noqa: E402
from torrix import Stack  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _start_mock():
    return MockUpstream().start()


@pytest.fixture
def mock():
    m = _start_mock()
    yield m
    m.stop()


@pytest.fixture
def mock2():
    m = _start_mock()
    yield m
    m.stop()


@pytest.fixture
def tmp(request):
    d = tempfile.mkdtemp(prefix="torrix-t-")
    yield Path(d)
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.passed and \
            not getattr(request.node, "keep_tmp", False):
        shutil.rmtree(d, ignore_errors=True)
    else:
        sys.stderr.write("\nkept %s\n" % d)


@pytest.fixture
def cp_stopped(request, tmp, mock):
    """A Stack whose processes the test starts itself."""
    s = Stack(tmp, mock)
    yield s
    problems = s.close()
    request.node.keep_tmp = bool(problems)
    assert not problems, "\n".join(problems)


@pytest.fixture
def cp(cp_stopped):
    """torrix-cp running (no nginx)."""
    return cp_stopped.start_cp()


@pytest.fixture
def stack(cp):
    """torrix-cp and nginx with the module running."""
    return cp.start_nginx()


@pytest.fixture
def api(cp):
    return cp.api
