"""Test harness for Torrix: starts torrix-cp and nginx with the module on
free loopback ports in a temporary directory, and talks to them.

Environment:
    TORRIX_BUILD  build directory (default: build, relative to the repo root)
    TORRIX_ASAN   1: binaries are built with ASan+UBSan; collect reports
"""

import json
import os
from decimal import Decimal
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("TORRIX_BUILD", "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD
CP_BIN = BUILD / "torrix-cp"
MODULE = BUILD / "nginx" / "ngx_http_torrix_module.so"
NGINX = "/usr/sbin/nginx"
ASAN = os.environ.get("TORRIX_ASAN") == "1"

UPSTREAM_OPENAI_KEY = "sk-upstream-openai-test"
UPSTREAM_ANTHROPIC_KEY = "sk-upstream-anthropic-test"
KEY_PREFIX = "sk-torrix-"
MISSING_ID = "key_aaaaaaaaaaaaaaaaaaaa"   # well-formed, never created

BAD_LOG = re.compile(r"\[(alert|emerg|crit)\]|AddressSanitizer|"
                     r"runtime error|LeakSanitizer")


# -- small utilities -----------------------------------------------------

_ports_given = set()


def free_port():
    """A loopback TCP port that was free a moment ago, and not one this
    process was given before: two ports picked before either is bound (the
    stack's torrix-cp and nginx) must differ, and the kernel may hand out
    the same free port twice in a row."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port in _ports_given:
            continue
        with socket.socket() as s:      # check it is still free
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_given.add(port)
        return port


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until(fn, timeout, interval=0.02, what="condition"):
    """Calls fn until it returns a truthy value; returns (value, seconds).
    Raises AssertionError with the last value after `timeout` seconds."""
    t0 = time.monotonic()
    last = None
    while True:
        last = fn()
        el = time.monotonic() - t0
        if last:
            return last, el
        if el > timeout:
            raise AssertionError("timed out after %.1fs waiting for %s; "
                                 "last: %r" % (timeout, what, last))
        time.sleep(interval)


def http(method, url, **kw):
    """One request on a fresh connection, ignoring proxy settings of the
    environment.  With stream=True the caller closes the response."""
    kw.setdefault("timeout", 15)
    with requests.Session() as s:
        s.trust_env = False
        return s.request(method, url, **kw)


def children(pid):
    """Pids whose parent is pid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        # the command name may contain spaces: fields after the last ')'
        if int(st.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(d))
    return sorted(out)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def find_fields(obj, pred, path=""):
    """All (path, value) of dict keys in obj (recursively) where pred(key)."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if pred(k):
                out.append((path + "/" + k, v))
            out.extend(find_fields(v, pred, path + "/" + k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(find_fields(v, pred, "%s[%d]" % (path, i)))
    return out


def assert_openai_error(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    assert "json" in r.headers.get("content-type", ""), r.headers
    e = r.json()["error"]
    assert isinstance(e, dict), r.text
    assert isinstance(e.get("message"), str) and e["message"], r.text
    assert isinstance(e.get("type"), str) and e["type"], r.text
    assert "code" in e, r.text
    return e


def assert_anthropic_error(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    assert "json" in r.headers.get("content-type", ""), r.headers
    j = r.json()
    assert j.get("type") == "error", r.text
    assert isinstance(j["error"].get("type"), str) and j["error"]["type"]
    assert isinstance(j["error"].get("message"), str) and \
        j["error"]["message"]
    return j["error"]


def assert_api_error(r, status):
    """An admin API error: {"error":{"type","message"}}."""
    assert r.status_code == status, (r.status_code, r.text)
    e = r.json()["error"]
    assert isinstance(e.get("type"), str) and e["type"], r.text
    assert isinstance(e.get("message"), str) and e["message"], r.text
    return e


def spool_frames(spool_dir):
    """Number of run records in the spool files (tx_spool.h layout)."""
    n = 0
    for f in Path(spool_dir).glob("*.txs"):
        data = f.read_bytes()
        off = 64
        while off + 8 <= len(data):
            ln = int.from_bytes(data[off:off + 4], "little")
            if ln == 0 or ln == 0xffffffff:
                break
            n += 1
            off += (8 + ln + 7) & ~7
    return n


# -- money -----------------------------------------------------------------

MONEY_PER_USD = 10 ** 8         # micro-cents


def money(usd):
    """A USD amount of the API (a JSON number) as integer micro-cents,
    exactly (no binary float arithmetic); None stays None."""
    if usd is None:
        return None
    m = Decimal(repr(usd)) * MONEY_PER_USD
    assert m == m.to_integral_value(), "not a whole micro-cent: %r" % usd
    return int(m)


TOKEN_FIELDS = ("input", "output", "cache_read", "cache_write", "reasoning")


def run_tokens(run):
    """The run's token counts, every field present (absent: 0)."""
    t = run.get("tokens") or {}
    return {f: t.get(f, 0) for f in TOKEN_FIELDS}


def expected_cost(price, tokens):
    """The cost in micro-cents of these tokens (run_tokens shape, input
    counting cached tokens) at a price of GET /pricing/{model}, by the
    documented formula (shared/tx_price.h): per-1M prices, cache prices
    falling back to the input price, tier prices for the whole request above
    tier_threshold, one rounding half up."""
    if price.get("free"):
        return 0
    above = price.get("tier_threshold") and \
        tokens["input"] > price["tier_threshold"]
    sfx = "_above" if above else ""
    pin = money(price["input%s_per_mtok_usd" % sfx])
    pout = money(price["output%s_per_mtok_usd" % sfx])
    pcr = money(price.get("cache_read%s_per_mtok_usd" % sfx))
    pcw = money(price.get("cache_write%s_per_mtok_usd" % sfx))
    pcr = pin if pcr is None else pcr
    pcw = pin if pcw is None else pcw
    cr, cw = tokens["cache_read"], tokens["cache_write"]
    uncached = max(tokens["input"] - cr - cw, 0)
    total = uncached * pin + cr * pcr + cw * pcw + tokens["output"] * pout
    return (total + 500000) // 1000000


def assert_cost(run, cost_mc):
    """The run's cost_usd is cost_mc micro-cents (to 1e-12 USD)."""
    got = run.get("cost_usd")
    assert got is not None, run
    assert abs(got - cost_mc / MONEY_PER_USD) < 1e-12, \
        ("cost_usd", got, "expected", cost_mc / MONEY_PER_USD, run)


# -- admin API client ----------------------------------------------------

class Admin:
    """The REST API of torrix-cp under /api/v1, with the admin key."""

    def __init__(self, stack, base):
        self.stack = stack
        self.base = base.rstrip("/") + "/api/v1"

    def request(self, method, path, body=None, key=True, **kw):
        headers = kw.pop("headers", {})
        if key is True:
            key = self.stack.admin_key
        if key:
            headers["Authorization"] = "Bearer " + key
        if body is not None:
            kw["data"] = json.dumps(body) \
                if isinstance(body, (dict, list)) else body
            headers.setdefault("Content-Type", "application/json")
        r = http(method, self.base + path, headers=headers, **kw)
        self._remember_secrets(r)
        return r

    def _remember_secrets(self, r):
        try:
            j = r.json()
        except ValueError:
            return
        for _, v in find_fields(j, lambda k: k == "key"):
            if isinstance(v, str) and v.startswith(KEY_PREFIX):
                self.stack.secrets.add(v)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def ok(self, method, path, body=None, status=(200, 201)):
        """A call that must succeed; returns its JSON (or None)."""
        r = self.request(method, path, body)
        statuses = status if isinstance(status, tuple) else (status,)
        assert r.status_code in statuses, \
            "%s %s -> %d %s" % (method, path, r.status_code, r.text)
        return r.json() if r.content else None

    def create(self, kind, **fields):
        r = self.post("/" + kind, fields)
        assert r.status_code == 201, (kind, fields, r.status_code, r.text)
        return r.json()

    def create_key(self, **fields):
        """A new key (default: all models); returns the 201 JSON."""
        fields.setdefault("name", "test-key")
        fields.setdefault("allowed_models", ["*"])
        k = self.create("keys", **fields)
        assert k["key"].startswith(KEY_PREFIX), k
        return k

    def list_all(self, path, limit=1000):
        """Follows next_cursor; returns every item."""
        items = []
        sep = "&" if "?" in path else "?"
        url = "%s%slimit=%d" % (path, sep, limit)
        while True:
            j = self.ok("GET", url)
            items.extend(j["data"])
            if not j.get("next_cursor"):
                return items
            url = "%s%slimit=%d&cursor=%s" % (path, sep, limit,
                                               j["next_cursor"])


# -- the stack -------------------------------------------------------------

NGINX_CONF = """\
load_module {module};
{user}
worker_processes 2;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;

events {{
    worker_connections 1024;
}}

http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body_temp;
    proxy_temp_path {tmp}/proxy_temp;
    fastcgi_temp_path {tmp}/fastcgi_temp;
    uwsgi_temp_path {tmp}/uwsgi_temp;
    scgi_temp_path {tmp}/scgi_temp;

    torrix_snapshot {data}/snapshot;
    torrix_spool {data}/spool size=1m rotate=1s;

    upstream mock_up {{
        server 127.0.0.1:{mock};
        keepalive 8;
    }}

    server {{
        listen 127.0.0.1:{port};

        location /v1/ {{
            torrix on;
            torrix_max_body_size 64k;
            torrix_fallback @torrix_fallback;
            include {repo}/conf/torrix_proxy.conf;
        }}

        location @torrix_fallback {{
            torrix on;
            torrix_max_body_size 64k;
            include {tmp}/torrix_proxy_fallback.conf;
            include {repo}/conf/torrix_fallback.conf;
        }}

        location = /proxy {{
            torrix on;
            torrix_max_body_size 64k;
            include {repo}/conf/torrix_proxy.conf;
        }}

        location /api/ {{
            proxy_pass http://127.0.0.1:{cp_port};
        }}
    }}
}}
"""


class Stack:
    """torrix-cp + nginx with the module, in one temporary directory."""

    def __init__(self, tmp, mock):
        self.tmp = Path(tmp)
        self.data = self.tmp / "data"
        self.mock = mock
        self.cp_port = free_port()
        self.port = free_port()
        self.cp_proc = None
        self.cp_logs = []           # (stdout path, stderr path) per start
        self.cp_expect_rc = 0
        self.nginx_pid = None
        self.secrets = set()        # sk-torrix- secrets seen in the test
        self.allowed_log = []       # regexes of bad log lines to tolerate
        self.admin_key = None
        self.api = Admin(self, self.cp_url)
        self.gw_api = Admin(self, self.url)     # the same API through nginx
        self.problems = []

    # -- urls

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def cp_url(self):
        return "http://127.0.0.1:%d" % self.cp_port

    # -- environment

    def san_env(self, env):
        if ASAN:
            env["ASAN_OPTIONS"] = ("detect_leaks=0:abort_on_error=0:"
                                   "log_path=%s/asan" % self.tmp)
            env["UBSAN_OPTIONS"] = ("print_stacktrace=1:log_path=%s/ubsan"
                                    % self.tmp)
        return env

    def cp_env(self, **extra):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OPENAI_", "ANTHROPIC_", "OLLAMA_"))}
        env.update({
            "OPENAI_BASE_URL": self.mock.url + "/v1",
            "OPENAI_API_KEY": UPSTREAM_OPENAI_KEY,
            "ANTHROPIC_BASE_URL": self.mock.url,
            "ANTHROPIC_API_KEY": UPSTREAM_ANTHROPIC_KEY,
            "OLLAMA_BASE_URL": self.mock.url,
            "TORRIX_TEST": "1",
        })
        env.update(extra)
        return self.san_env(env)

    # -- torrix-cp

    def cp_cli(self, *args):
        """Runs `torrix-cp args...`; returns the CompletedProcess."""
        return subprocess.run([str(CP_BIN)] + [str(a) for a in args],
                              env=self.cp_env(), capture_output=True,
                              timeout=30)

    def start_cp(self, *extra):
        """Starts torrix-cp (extra: more command-line options)."""
        assert self.cp_proc is None
        assert CP_BIN.exists(), "%s not built" % CP_BIN
        n = len(self.cp_logs)
        out = self.tmp / ("cp.%d.out" % n)
        err = self.tmp / ("cp.%d.err" % n)
        self.cp_logs.append((out, err))
        with open(out, "wb") as fo, open(err, "wb") as fe:
            self.cp_proc = subprocess.Popen(
                [str(CP_BIN), "--data", str(self.data),
                 "--listen", "127.0.0.1:%d" % self.cp_port, "--foreground"]
                + [str(a) for a in extra],
                env=self.cp_env(), stdout=fo, stderr=fe,
                stdin=subprocess.DEVNULL)
        self.cp_expect_rc = 0

        def healthy():
            if self.cp_proc.poll() is not None:
                raise AssertionError("torrix-cp exited with %d:\n%s" % (
                    self.cp_proc.returncode, self.cp_output(n)))
            try:
                return http("GET", self.cp_url + "/api/v1/health",
                            timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, 10, 0.05, "torrix-cp health")
        keyfile = self.data / "admin.key"
        mode = keyfile.stat().st_mode & 0o777
        assert mode == 0o600, "admin.key mode %o" % mode
        self.admin_key = keyfile.read_text().strip()
        assert self.admin_key
        return self

    def cp_output(self, n=-1):
        out, err = self.cp_logs[n]
        return out.read_text(errors="replace") + err.read_text(
            errors="replace")

    def stop_cp(self, expect_rc=0):
        """SIGTERM, wait; checks the exit code."""
        p, self.cp_proc = self.cp_proc, None
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError("torrix-cp did not exit on SIGTERM")
        assert rc == expect_rc, "torrix-cp exit code %d:\n%s" % (
            rc, self.cp_output())

    def kill_cp(self):
        p, self.cp_proc = self.cp_proc, None
        p.kill()
        p.wait()

    # -- nginx

    def write_nginx_conf(self):
        conf = NGINX_CONF.format(
            module=MODULE, user="user root;" if os.geteuid() == 0 else "",
            tmp=self.tmp, data=self.data, mock=self.mock.port,
            port=self.port, cp_port=self.cp_port, repo=REPO)
        path = self.tmp / "nginx.conf"
        path.write_text(conf)
        # attempts that may fall back time out sooner, so a test can wait
        proxy = (REPO / "conf" / "torrix_proxy.conf").read_text()
        (self.tmp / "torrix_proxy_fallback.conf").write_text(
            proxy.replace("proxy_read_timeout             600s;",
                          "proxy_read_timeout             2s;"))
        return path

    def nginx_env(self):
        env = dict(os.environ)
        if ASAN:
            lib = subprocess.run(["gcc", "-print-file-name=libasan.so"],
                                 capture_output=True, text=True).stdout
            env["LD_PRELOAD"] = lib.strip()
        return self.san_env(env)

    def start_nginx(self):
        assert MODULE.exists(), "%s not built" % MODULE
        conf = self.write_nginx_conf()
        r = subprocess.run([NGINX, "-p", str(self.tmp), "-c", str(conf),
                            "-e", str(self.tmp / "error.log")],
                           env=self.nginx_env(), capture_output=True,
                           timeout=30)
        assert r.returncode == 0, "nginx failed to start: %s\n%s" % (
            r.stderr.decode(errors="replace"), self.error_log())
        pidfile = self.tmp / "nginx.pid"
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(),
                   10, 0.02, "nginx.pid")
        self.nginx_pid = int(pidfile.read_text())
        wait_until(lambda: port_open(self.port), 10, 0.02, "nginx port")
        wait_until(lambda: len(self.workers()) == 2, 10, 0.02,
                   "2 nginx workers")
        return self

    def workers(self):
        return children(self.nginx_pid)

    def stop_nginx(self):
        pid, self.nginx_pid = self.nginx_pid, None
        try:
            os.kill(pid, signal.SIGQUIT)
        except ProcessLookupError:
            return
        try:
            wait_until(lambda: not pid_alive(pid), 15, 0.05, "nginx exit")
        except AssertionError:
            os.kill(pid, signal.SIGKILL)
            raise

    def error_log(self):
        p = self.tmp / "error.log"
        return p.read_text(errors="replace") if p.exists() else ""

    # -- after each test

    def close(self):
        """Stops everything and returns a list of problems found in logs."""
        problems = []
        for stop in (self.stop_nginx if self.nginx_pid else None,
                     (lambda: self.stop_cp(self.cp_expect_rc))
                     if self.cp_proc else None):
            if stop:
                try:
                    stop()
                except AssertionError as e:
                    problems.append(str(e))
        problems += self.check_logs()
        return problems

    def check_logs(self):
        problems = []
        errlog = self.error_log()
        for line in errlog.splitlines():
            if BAD_LOG.search(line) and not any(
                    re.search(a, line) for a in self.allowed_log):
                problems.append("error.log: " + line)
        secrets = set(self.secrets)
        secrets.add("sk-upstream-")
        for s in secrets | ({self.admin_key} if self.admin_key else set()):
            if s in errlog:
                problems.append("error.log leaks a secret %s..." % s[:14])
        for i, (out, err) in enumerate(self.cp_logs):
            text = self.cp_output(i)
            if re.search(r"AddressSanitizer|runtime error|LeakSanitizer",
                         text):
                problems.append("torrix-cp start %d: sanitizer report:\n%s"
                                % (i, text[-4000:]))
            leaks = set(secrets)
            if i > 0 and self.admin_key:   # printed once, on first start
                leaks.add(self.admin_key)
            for s in leaks:
                if s in text:
                    problems.append("torrix-cp output (start %d) leaks a "
                                    "secret %s..." % (i, s[:14]))
        for f in sorted(list(self.tmp.glob("asan*")) +
                        list(self.tmp.glob("ubsan*"))):
            if f.is_file() and f.stat().st_size:
                problems.append("%s:\n%s" % (f.name, f.read_text(
                    errors="replace")[-4000:]))
        return problems

    # -- gateway

    def gw(self, method, path, key=None, body=None, headers=None, **kw):
        """A request to the gateway (nginx) with a Torrix key."""
        h = dict(headers or {})
        if key:
            h.setdefault("Authorization", "Bearer " + key)
        if body is not None:
            kw["data"] = json.dumps(body) \
                if isinstance(body, (dict, list)) else body
            h.setdefault("Content-Type", "application/json")
        return http(method, self.url + path, headers=h, **kw)

    def chat(self, key, model="gpt-4o-mini", **kw):
        body = {"model": model,
                "messages": [{"role": "user", "content": "hi"}]}
        body.update(kw.pop("extra", {}))
        return self.gw("POST", "/v1/chat/completions", key, body, **kw)

    def messages(self, key, model="claude-3-5-haiku-latest", **kw):
        """Anthropic /v1/messages with the key in x-api-key."""
        h = {"x-api-key": key, "anthropic-version": "2023-06-01"}
        h.update(kw.pop("headers", {}))
        body = {"model": model, "max_tokens": 16,
                "messages": [{"role": "user", "content": "hi"}]}
        body.update(kw.pop("extra", {}))
        return self.gw("POST", "/v1/messages", None, body, headers=h, **kw)

    def wait_status(self, fn, status, timeout=1.0):
        """Polls fn() (a request) until it answers `status`; returns the
        seconds it took."""
        return wait_until(lambda: fn().status_code == status, timeout, 0.02,
                          "status %d" % status)[1]

    def runs(self, **filters):
        q = "&".join("%s=%s" % kv for kv in filters.items())
        return self.api.list_all("/runs" + ("?" + q if q else ""))

    def wait_runs(self, n, timeout=5.0):
        """Polls GET /runs until it holds at least n runs; returns them."""
        return wait_until(lambda: (lambda r: r if len(r) >= n else None)(
            self.runs()), timeout, 0.1, "%d runs" % n)[0]

    def run(self, run_id, timeout=5.0):
        """GET /runs/{id} (with bodies), polled until ingested."""
        def get():
            r = self.api.get("/runs/" + run_id)
            if r.status_code == 404:
                return None
            assert r.status_code == 200, r.text
            return r.json()
        return wait_until(get, timeout, 0.05, "run %s" % run_id)[0]

    def price(self, model):
        """GET /pricing/{model}."""
        return self.api.ok("GET", "/pricing/" + model)
