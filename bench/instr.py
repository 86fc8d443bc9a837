#!/usr/bin/python3
"""Instructions per request, plain nginx vs Torrix, under callgrind.

The requests/s of bench.py move with this VM's speed (plain nginx's own CPU
per request drifts between 17 and 27 us within minutes); the instructions a
gateway executes per request do not.  This runs the two gateways of
bench.py (same mock upstream, same ~1 KB chat request, same Torrix
configuration: everything on, torrix-cp ingesting) each as one nginx
process (`master_process off`) under `valgrind --tool=callgrind` with
collection switched on only while wrk sends requests, and prints the user
space instructions per request of each, by object (nginx, the module, libc,
the libraries the module calls), and the module's costliest functions.
Kernel time (system calls, wakeups) is not counted: see bench.py --syscalls
for that.

    ./build.sh bench --instr [--duration SECONDS]
    python3 bench/instr.py [--duration SECONDS] [--top N] [--nolimits]

--nolimits gives Torrix bench.py's key without limits or budgets: the
limits' instructions are the difference from a run without it.

Needs valgrind (installed with apt-get when missing).  Bounded in time.
INSTR_KEEP=1 keeps the callgrind files (for callgrind_annotate) and says
where they are.
"""

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402  (nginx_conf, write_lua, Nginx, the mock body)
import torrix  # noqa: E402  (imported by bench from t/)


def ensure_valgrind():
    if shutil.which("valgrind") and shutil.which("callgrind_control"):
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq",
                           "--no-install-recommends", "valgrind"],
                   check=True, timeout=600,
                   env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


class Grind:
    """One nginx, single process, under callgrind (collection off)."""

    def __init__(self, tmp, name, conf):
        self.tmp, self.name = tmp, name
        self.conf = tmp / (name + ".conf")
        # one process: the master does the worker's job, in the foreground
        self.conf.write_text("master_process off;\ndaemon off;\n" + conf)
        self.out = tmp / ("callgrind.%s.out" % name)
        self.proc = None

    def start(self, port):
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             "--callgrind-out-file=%s" % self.out,
             bench.NGINX, "-p", str(self.tmp), "-c", str(self.conf),
             "-e", str(self.tmp / (self.name + ".error.log"))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        torrix.wait_until(lambda: torrix.port_open(port), 60,
                          what="%s under valgrind on %d" % (self.name, port))

    def control(self, *args):
        subprocess.run(["callgrind_control"] + list(args)
                       + [str(self.proc.pid)], check=True,
                       stdout=subprocess.DEVNULL, timeout=60)

    def collect(self, on):
        """Instrumentation (and so counting) only around the measured run;
        the counts are dumped at its end."""
        if on:
            self.control("-i", "on")
            self.control("-z")
        else:
            self.control("-d")
            self.control("-i", "off")

    def dumps(self):
        return sorted(self.tmp.glob(self.out.name + "*"))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def self_cost(path):
    """Self instructions by object and by (object, function), from a
    callgrind output file (the cost line after a calls= line is the call's
    inclusive cost and is skipped)."""
    names = {"ob": {}, "fn": {}}
    by_ob = collections.Counter()
    by_fn = collections.Counter()
    ob = fn = None
    skip = False
    pat = re.compile(r"^(c?)(ob|fn|fl|fi|fe)=\((\d+)\)(?: (.*))?$")
    with open(path, errors="replace") as f:
        for line in f:
            m = pat.match(line)
            if m:
                called, kind, ident, name = m.groups()
                table = names.get(kind)
                if table is not None:
                    if name is not None:
                        table[ident] = name.strip()
                    if not called:
                        if kind == "ob":
                            ob = table.get(ident)
                        else:
                            fn = table.get(ident)
                continue
            if line.startswith("calls="):
                skip = True
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                if skip:
                    skip = False
                    continue
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    by_ob[ob] += int(parts[1])
                    by_fn[(ob, fn)] += int(parts[1])
    return by_ob, by_fn


def short(ob):
    base = os.path.basename(ob or "?")
    for k in ("ngx_http_torrix_module", "nginx", "libc.so", "liblmdb",
              "libsodium", "libcrypto", "libssl", "ld-linux", "libz",
              "libpcre", "libcjson"):
        if base.startswith(k):
            return {"ngx_http_torrix_module": "module", "libc.so": "libc",
                    "ld-linux": "ld.so"}.get(k, k)
    return base


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=4,
                    help="seconds of wrk per gateway (under valgrind)")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--nolimits", action="store_true",
                    help="Torrix with bench.py's key without limits or "
                         "budgets (the cost of the limits is the difference)")
    args = ap.parse_args(argv)
    ensure_valgrind()

    tmp = Path(tempfile.mkdtemp(prefix="torrix-instr-"))
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / d).mkdir()
    if os.geteuid() == 0:
        os.chmod(tmp, 0o755)

    p_mock, p_plain = torrix.free_port(), torrix.free_port()
    mock = bench.Nginx(tmp, "mock", bench.nginx_conf(
        tmp, "mock", bench.mock_http(p_mock)))

    class Upstream:
        port = p_mock
        url = "http://127.0.0.1:%d" % p_mock

    stack = torrix.Stack(tmp / "torrix", Upstream)
    (tmp / "torrix").mkdir()
    p_torrix = stack.port

    plain = Grind(tmp, "plain", bench.nginx_conf(
        tmp, "plain", bench.plain_http(p_mock, p_plain)))
    gw = Grind(tmp, "torrix", bench.nginx_conf(
        tmp, "torrix", bench.torrix_http(stack.data, p_mock, p_torrix),
        module=True))

    rows = {}
    try:
        mock.start(p_mock)
        stack.start_cp()
        plain.start(p_plain)
        gw.start(p_torrix)
        key = bench.bench_key(stack.api)
        if args.nolimits:
            key = stack.api.create_key(allowed_models=["gpt-4o*", "claude-*"])
        time.sleep(0.5)
        lua = bench.write_lua(tmp, key["key"])

        for name, g, port in (("plain", plain, p_plain),
                              ("torrix", gw, p_torrix)):
            url = "http://127.0.0.1:%d/v1/chat/completions" % port
            # warm up (first requests fill caches, open the snapshot, ...)
            for _ in range(20):
                r = torrix.http("POST", url, data=bench.request_body(),
                                headers={"Authorization": "Bearer "
                                         + key["key"],
                                         "Content-Type": "application/json"},
                                timeout=30)
                assert r.status_code == 200, (name, r.status_code, r.text)
            g.collect(True)
            out = subprocess.run(
                ["wrk", "-t1", "-c4", "-d%ds" % args.duration, "--timeout",
                 "10s", "-s", str(lua), url], capture_output=True, text=True,
                timeout=args.duration + 60).stdout
            g.collect(False)
            reqs = int(re.search(r"(\d+) requests in", out).group(1))
            non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            assert not non2xx, out
            g.stop()
            by_ob, by_fn = collections.Counter(), collections.Counter()
            for part in g.dumps():
                o, f = self_cost(part)
                by_ob.update(o)
                by_fn.update(f)
            rows[name] = {"requests": reqs, "by_ob": by_ob, "by_fn": by_fn}
    finally:
        plain.stop()
        gw.stop()
        stack.close()
        mock.stop()
        if os.environ.get("INSTR_KEEP"):
            print("callgrind files kept in %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    print("User-space instructions per request (callgrind, one nginx "
          "process each, wrk -c4):")
    print()
    print("| object | plain nginx | Torrix |")
    print("| --- | --- | --- |")
    per = {}
    for name, row in rows.items():
        agg = collections.Counter()
        for ob, n in row["by_ob"].items():
            agg[short(ob)] += n
        per[name] = {k: v / row["requests"] for k, v in agg.items()}
    keys = sorted(set(per["plain"]) | set(per["torrix"]),
                  key=lambda k: -per["torrix"].get(k, 0))
    for k in keys:
        a, b = per["plain"].get(k, 0), per["torrix"].get(k, 0)
        if a >= 50 or b >= 50:
            print("| %s | %s | %s |" % (k, "{:,.0f}".format(a),
                                        "{:,.0f}".format(b)))
    tot = {n: sum(v.values()) for n, v in per.items()}
    print("| **total** | **{:,.0f}** | **{:,.0f}** |".format(
        tot["plain"], tot["torrix"]))
    print()
    print("Torrix executes %.2fx the user-space instructions of plain nginx "
          "per request (+%s)." % (tot["torrix"] / tot["plain"],
                                  "{:,.0f}".format(tot["torrix"]
                                                   - tot["plain"])))
    print()
    print("The module's costliest functions (self instructions per request):")
    fns = [(n / rows["torrix"]["requests"], fn)
           for (ob, fn), n in rows["torrix"]["by_fn"].items()
           if short(ob) == "module"]
    for n, fn in sorted(fns, reverse=True)[:args.top]:
        print("  %8.0f  %s" % (n, fn))

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out_dir = bench.REPO / "bench-out"
    out_dir.mkdir(exist_ok=True)
    with open(out_dir / "results.jsonl", "a") as f:
        f.write(json.dumps({"time": stamp, "instr_per_req": per,
                            "requests": {n: r["requests"]
                                         for n, r in rows.items()}}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
