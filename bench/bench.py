#!/usr/bin/python3
"""Torrix benchmark: side by side in one run, same mock upstream, same body.

Setups (all on loopback, started and stopped here; the two gateways with
the same worker_processes: by default `auto`, as deployed and as
`./build.sh run` runs Torrix, so each gets the machine's two cores; with
`--workers 1`, one worker each, the gateway's own cost per request):
  direct  wrk -> mock upstream (nginx returning a fixed chat.completion)
  plain   wrk -> nginx proxy_pass (upstream keepalive) -> mock
  torrix  wrk -> nginx + ngx_torrix_module, everything on -> mock, with
          torrix-cp ingesting the spool at the same time

Prints requests/s at two concurrencies, p50/p99 latency, CPU time per
request of the gateway worker, the torrix/plain ratio, and the SSE check
(added time to first byte, frames delayed or not).  Writes the same figures
as JSON lines to bench-out/results.jsonl.  Every run is bounded in time.

    ./build.sh bench [--duration SECONDS] [--quick] [--peers] [--pin]
                     [--perf] [--perf-machine] [--syscalls] [--cp-paused]
    ./build.sh bench --scale [--duration SECONDS] [--quick]   (scale.py)
    ./build.sh bench --instr    instructions per request, callgrind (instr.py)
"""

import argparse
import collections
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "t"))

import torrix  # noqa: E402  (the test harness: ports, cp start, API client)
from mock_upstream import MockUpstream  # noqa: E402

NGINX = "/usr/sbin/nginx"
BUILD = Path(os.environ.get("TORRIX_BUILD", REPO / "build"))
MODULE = BUILD / "nginx" / "ngx_http_torrix_module.so"

CHAT_RESPONSE = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant",
                             "content": "Benchmarks are measured, not "
                                        "guessed."}}],
    "usage": {"prompt_tokens": 250, "completion_tokens": 12,
              "total_tokens": 262,
              "prompt_tokens_details": {"cached_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0}}},
    separators=(",", ":"))


def request_body():
    """A ~1 KB chat request."""
    text = ("Summarise the following paragraph in one sentence. " * 18)
    return json.dumps({"model": "gpt-4o-mini", "max_tokens": 256,
                       "messages": [{"role": "system",
                                     "content": "You are terse."},
                                    {"role": "user", "content": text}]},
                      separators=(",", ":"))


def common_http(tmp):
    return ("    access_log off;\n"
            "    client_body_temp_path %(t)s/body;\n"
            "    proxy_temp_path %(t)s/proxy;\n"
            "    fastcgi_temp_path %(t)s/fastcgi;\n"
            "    uwsgi_temp_path %(t)s/uwsgi;\n"
            "    scgi_temp_path %(t)s/scgi;\n" % {"t": tmp})


PIN = {}  # setup name -> CPU list, when --pin
WORKERS = {"plain": "1", "torrix": "1"}  # gateway worker_processes


def nginx_conf(tmp, name, http_body, module=False):
    user = "user root;\n" if os.geteuid() == 0 else ""
    if name in PIN:
        user += "worker_cpu_affinity %s;\n" % "".join(
            "1" if str(c) in PIN[name].split(",") else "0"
            for c in reversed(range(os.cpu_count())))
    load = "load_module %s;\n" % MODULE if module else ""
    user += "worker_processes %s;\n" % WORKERS.get(name, "1")
    return (load + user +
            "pid %(t)s/%(n)s.pid;\n"
            "error_log %(t)s/%(n)s.error.log warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n" % {"t": tmp, "n": name}
            + common_http(tmp) + http_body + "}\n")


def listen(name):
    """The gateway's listen parameters: with more than one worker,
    `reuseport`, so the kernel spreads wrk's connections over the workers
    (without it one worker accepted all 64 of them in the runs measured)."""
    return "backlog=4096" + (" reuseport" if WORKERS.get(name, "1") != "1"
                             else "")


def mock_http(port):
    """The mock upstream: nginx returning CHAT_RESPONSE."""
    return ("    server {\n"
            "        listen 127.0.0.1:%d backlog=4096;\n"
            "        keepalive_requests 100000;\n"
            "        location / {\n"
            "            default_type application/json;\n"
            "            return 200 '%s';\n"
            "        }\n"
            "    }\n") % (port, CHAT_RESPONSE)


def plain_http(mock_port, port):
    """Plain nginx proxy_pass to the mock, upstream keepalive."""
    return ("    upstream mock_up { server 127.0.0.1:%d; keepalive 64; }\n"
            "    server {\n"
            "        listen 127.0.0.1:%d %s;\n"
            "        keepalive_requests 100000;\n"
            "        location /v1/ {\n"
            "            proxy_pass http://mock_up;\n"
            "            proxy_http_version 1.1;\n"
            "            proxy_set_header Connection \"\";\n"
            "            proxy_buffering off;\n"
            "        }\n"
            "    }\n") % (mock_port, port, listen("plain"))


def torrix_http(data, mock_port, port):
    """nginx + Torrix, everything on, keepalive to the mock."""
    return ("    torrix_snapshot %(d)s/snapshot;\n"
            "    torrix_spool %(d)s/spool size=8m rotate=10s;\n"
            "    upstream mock_up { server 127.0.0.1:%(m)d; keepalive 64; }\n"
            "    server {\n"
            "        listen 127.0.0.1:%(p)d %(l)s;\n"
            "        keepalive_requests 100000;\n"
            "        location /v1/ {\n"
            "            torrix on;\n"
            "            include %(r)s/conf/torrix_proxy.conf;\n"
            "        }\n"
            "    }\n") % {"d": data, "m": mock_port, "p": port, "r": REPO,
                                "l": listen("torrix")}


def bench_key(api):
    """The bench tenant: an org and a project with caps, a key with RPM,
    TPM and budgets, sample_rate 0.01 and a router rule rewriting the
    bench model on every request.  Returns the key."""
    org = api.create("orgs", name="bench", spend_cap_usd=1e6)
    prj = api.create("projects", slug="bench", name="bench",
                     org_id=org["id"], daily_cap_usd=1e6)
    key = api.create_key(project_id=prj["id"],
                         allowed_models=["gpt-4o*", "claude-*"],
                         rpm=10 ** 9, tpm=10 ** 12,
                         daily_cap_usd=1e6, monthly_budget_usd=1e6)
    api.ok("PATCH", "/settings", {"sample_rate": 0.01})
    api.ok("POST", "/routes", {"pattern": "gpt-4o-mini",
                               "target": "gpt-4o-mini-2024-07-18"})
    return key


class Nginx:
    def __init__(self, tmp, name, conf):
        self.tmp, self.name = tmp, name
        self.conf = tmp / (name + ".conf")
        self.conf.write_text(conf)

    def start(self, port):
        subprocess.run([NGINX, "-p", str(self.tmp), "-c", str(self.conf),
                        "-e", str(self.tmp / (self.name + ".error.log"))],
                       check=True)
        torrix.wait_until(lambda: torrix.port_open(port), 10,
                          what="%s on %d" % (self.name, port))

    def pid(self):
        return int((self.tmp / (self.name + ".pid")).read_text())

    def workers(self):
        return torrix.children(self.pid())

    def stop(self):
        try:
            pid = self.pid()
        except (OSError, ValueError):
            return
        os.kill(pid, signal.SIGQUIT)
        torrix.wait_until(lambda: not torrix.pid_alive(pid), 10,
                          what="nginx exit")


def proc_stat_sum(pids, fields):
    """The sum over pids of these /proc/PID/stat fields (counted from the
    one after the command name: 7 minflt, 11 utime, 12 stime)."""
    total = 0
    for pid in pids:
        try:
            f = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1]
            parts = f.split()
            total += sum(int(parts[i]) for i in fields)
        except OSError:
            pass
    return total


def cpu_ticks(pids, sys_only=False):
    return proc_stat_sum(pids, (12,) if sys_only else (11, 12))


def minor_faults(pids):
    """Page faults taken by pids so far (minflt)."""
    return proc_stat_sum(pids, (7,))


def rss_kb(pid):
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def parse_latency(text, pct):
    m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % pct, text, re.M)
    if not m:
        return None
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000.0 if unit == "us" else (v * 1000.0 if unit == "s" else v)


def machine_ticks():
    """The whole machine's busy, idle and steal ticks (/proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0]
         .split()[1:9]]
    snmp = Path("/proc/net/snmp").read_text().splitlines()
    tcp = [line.split() for line in snmp if line.startswith("Tcp:")]
    segs = int(dict(zip(tcp[0], tcp[1]))["OutSegs"])
    return {"busy": f[0] + f[1] + f[2] + f[5] + f[6], "idle": f[3] + f[4],
            "steal": f[7], "tcp_segments": segs}


def sched_report(data, rps, groups):
    """From a perf record of sched_switch/sched_wakeup: each CPU's share
    per process group (groups: name -> pids; wrk by name; "idle"; the rest
    "other"), and the wakeups per request of each group, split into those
    from the same CPU and across CPUs."""
    out = subprocess.run(["perf", "script", "-i", str(data), "-F",
                          "cpu,time,event,trace"], capture_output=True,
                         text=True, timeout=120).stdout
    by_pid = {p: g for g, ps in groups.items() for p in ps}

    def group(comm, pid):
        if pid == 0:
            return "idle"
        if pid in by_pid:
            return by_pid[pid]
        return "wrk" if comm == "wrk" else "other"

    # this kernel traces no switch away from the idle task: an idle
    # period ends at the first wakeup aimed at its CPU, and the span up to
    # a switch belongs to the task that switch leaves (prev)
    cur, since, share = {}, {}, collections.Counter()
    wakes = collections.Counter()
    first = last = None
    for line in out.splitlines():
        m = re.match(r"\s*\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)", line)
        if not m:
            continue
        cpu, t, ev, tr = int(m.group(1)), float(m.group(2)), m.group(3), \
            m.group(4)
        first = t if first is None else first
        last = t
        if ev.startswith("sched:sched_switch"):
            sw = re.search(r"prev_comm=(.*) prev_pid=(\d+) .*"
                           r"next_comm=(.*) next_pid=(\d+)", tr)
            if not sw:
                continue
            share[(cpu, group(sw.group(1), int(sw.group(2))))] += \
                t - since.get(cpu, first)
            cur[cpu], since[cpu] = group(sw.group(3), int(sw.group(4))), t
        elif ev.startswith("sched:sched_wakeup"):
            wk = re.search(r"comm=(.*) pid=(\d+) .*target_cpu=(\d+)", tr)
            if not wk:
                continue
            target, g = int(wk.group(3)), group(wk.group(1), int(wk.group(2)))
            wakes[(g, "same" if target == cpu else "cross")] += 1
            if cur.get(target) == "idle":
                share[(target, "idle")] += t - since[target]
                cur[target], since[target] = g, t
    span = (last - first) if first is not None and last > first else 0
    if not span or not rps:
        return {}
    for cpu, g in cur.items():
        share[(cpu, g)] += last - since[cpu]
    cpus = {}
    for (cpu, g), v in share.items():
        cpus.setdefault("cpu%d" % cpu, {})[g] = round(100 * v / span)
    return {"cpu_percent": {k: dict(sorted(v.items(), key=lambda x: -x[1]))
                            for k, v in sorted(cpus.items())},
            "wakeups_per_req": {"%s %s" % k: round(n / span / rps, 3)
                                for k, n in sorted(wakes.items())
                                if k[0] != "other"}}


PERF_HZ = 2000  # --perf-machine's sampling rate, per CPU


def machine_profile(data, requests, groups):
    """From a system-wide perf record (cpu-clock, PERF_HZ): the CPU time
    per request of each process group (groups: name -> pids; wrk by name;
    the rest "other"; the idle task left out) and of each of its symbols,
    in microseconds."""
    out = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "-q",
                          "--sort", "pid,sym", "-F", "sample,pid,sym"],
                         capture_output=True, text=True, timeout=300).stdout
    by_pid = {p: g for g, ps in groups.items() for p in ps}
    prof = collections.defaultdict(collections.Counter)
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+(\d+):(\S+)\s+\[(.)\]\s+(.*\S)", line)
        if not m or int(m.group(2)) == 0:
            continue
        pid, comm = int(m.group(2)), m.group(3)
        g = by_pid.get(pid, "wrk" if comm == "wrk" else "other")
        sym = ("[k] " if m.group(4) == "k" else "") + m.group(5)
        prof[g][sym] += int(m.group(1)) * 1e6 / PERF_HZ / max(requests, 1)
    return {g: dict(c) for g, c in prof.items()}


def machine_profile_diff(plain, tor, top=8):
    """Prints, per process group, its microseconds a request in one row
    (plain nginx) and in another (Torrix), and the symbols that grew (or
    shrank) most."""
    for g in ("gateway", "mock", "wrk", "torrix-cp", "other"):
        a, b = plain.get(g, {}), tor.get(g, {})
        ta, tb = sum(a.values()), sum(b.values())
        d = sorted(((b.get(k, 0) - a.get(k, 0), k) for k in set(a) | set(b)),
                   reverse=True)
        moved = [x for x in d[:top] if x[0] >= 0.01] \
            + [x for x in d[-3:] if x[0] <= -0.02]
        print("      %-9s %5.2f -> %5.2f us/req (%+.2f): %s"
              % (g, ta, tb, tb - ta,
                 ", ".join("%+.2f %s" % x for x in moved)), flush=True)


def wrk(url, lua, conns, duration, pids, others=None):
    """wrk's figures; CPU per request of `pids` and of each of `others`
    (name -> pids), and of wrk itself and the whole machine."""
    hz = os.sysconf("SC_CLK_TCK")
    others = others or {}
    before, sys_before = cpu_ticks(pids), cpu_ticks(pids, True)
    flt_before = minor_faults(pids)
    obefore = {k: cpu_ticks(v) for k, v in others.items()}
    mbefore = machine_ticks()
    wbefore = resource.getrusage(resource.RUSAGE_CHILDREN)
    pin = ["taskset", "-c", PIN["load"]] if "load" in PIN else []
    out = subprocess.run(pin + ["wrk", "-t1", "-c%d" % conns, "-d%ds" % duration,
                          "--timeout", "5s", "--latency", "-s", str(lua),
                          url], capture_output=True, text=True,
                         timeout=duration + 30).stdout
    after, sys_after = cpu_ticks(pids), cpu_ticks(pids, True)
    flt_after = minor_faults(pids)
    oafter = {k: cpu_ticks(v) for k, v in others.items()}
    mafter = machine_ticks()
    wafter = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = re.search(r"(\d+) requests in", out)
    reqs = int(m.group(1)) if m else 0
    per = (lambda t: t / hz * 1e6 / reqs) if reqs else (lambda t: None)
    machine = {k: per(mafter[k] - mbefore[k]) for k in mafter
               if k != "tcp_segments"}
    machine["tcp_segments"] = (mafter["tcp_segments"]
                               - mbefore["tcp_segments"]) / reqs \
        if reqs else None
    machine.update({k: per(oafter[k] - obefore[k]) for k in oafter})
    machine["gateway_sys"] = per(sys_after - sys_before)
    machine["gateway_faults"] = (flt_after - flt_before) / reqs \
        if reqs else None
    machine["wrk"] = per(((wafter.ru_utime + wafter.ru_stime)
                          - (wbefore.ru_utime + wbefore.ru_stime)) * hz)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_err = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps, "requests": reqs,
        "p50_ms": parse_latency(out, 50), "p99_ms": parse_latency(out, 99),
        "cpu_us_per_req": per(after - before),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_err.group(1) if socket_err else "",
        "machine_us": machine,
    }


def caught_up(api):
    """Waits until torrix-cp has ingested the backlog a paused row left
    (its count of ingested runs still for 1.5 s), so that its catching up
    does not land in the next row's figures; raises after 60 s."""
    seen = {"n": None, "since": time.monotonic()}

    def still():
        n = (api.ok("GET", "/health").get("ingest") or {}).get("ingested")
        if n != seen["n"]:
            seen.update(n=n, since=time.monotonic())
        return time.monotonic() - seen["since"] >= 1.5

    torrix.wait_until(still, 60, interval=0.25,
                      what="torrix-cp to ingest the paused row's runs")


def write_lua(tmp, key, name="post", extra=None):
    lua = tmp / (name + ".lua")
    body = request_body().replace("\\", "\\\\").replace('"', '\\"')
    text = ('wrk.method = "POST"\n'
            'wrk.body = "%s"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            'wrk.headers["Authorization"] = "Bearer %s"\n' % (body, key))
    for k, v in (extra or {}).items():
        text += 'wrk.headers["%s"] = "%s"\n' % (k, v)
    lua.write_text(text)
    return lua


def start_portkey(port):
    """The Portkey gateway from npm, bound to loopback (bench/peers)."""
    peers = REPO / "bench" / "peers"
    entry = peers / "node_modules/@portkey-ai/gateway/build/start-server.js"
    if not entry.exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=peers,
                       check=True, timeout=600, stdout=subprocess.DEVNULL)
    env = dict(os.environ, NODE_ENV="production")
    p = subprocess.Popen(["node", "-r", str(peers / "loopback.cjs"),
                          str(entry), "--port=%d" % port, "--headless"],
                         cwd=peers, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    torrix.wait_until(lambda: torrix.port_open(port), 30, what="portkey")
    return p


def sse_check(stack, key, mock_port):
    """Time to first byte and frame timing, direct vs through Torrix."""
    import requests
    body = {"model": "gpt-4o-mini", "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}
    hdr = {"x-mock-chunks": "5", "x-mock-frame-delay-ms": "50",
           "Content-Type": "application/json"}

    def run(url, auth):
        h = dict(hdr)
        h["Authorization"] = "Bearer " + auth
        t0 = time.monotonic()
        times = []
        with requests.post(url, data=json.dumps(body), headers=h,
                           stream=True, timeout=10) as r:
            buf = b""
            for data in r.iter_content(chunk_size=None):
                now = time.monotonic() - t0
                buf += data
                while b"\n\n" in buf:
                    _, buf = buf.split(b"\n\n", 1)
                    times.append(now)
        return times

    direct, via = [], []
    for _ in range(5):
        direct.append(run("http://127.0.0.1:%d/v1/chat/completions"
                          % mock_port, "x"))
        via.append(run(stack.url + "/v1/chat/completions", key))
    ttfb_direct = sorted(t[0] for t in direct)[2]
    ttfb_via = sorted(t[0] for t in via)[2]
    # a frame is "delayed" when it arrives > 20 ms after the upstream sent
    # it, i.e. later than in the direct run by more than that
    n = min(len(direct[2]), len(via[2]))
    lag = max(via[2][i] - direct[2][i] for i in range(n))
    return {"ttfb_direct_ms": ttfb_direct * 1000,
            "ttfb_torrix_ms": ttfb_via * 1000,
            "added_ttfb_ms": (ttfb_via - ttfb_direct) * 1000,
            "max_frame_lag_ms": lag * 1000,
            "frames_delayed": lag > 0.020,
            "frames": len(via[2])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--conns", default="16,64")
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds; the median round is reported")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="",
                    help="comma-separated setups to run (direct,plain,torrix)")
    ap.add_argument("--peers", action="store_true",
                    help="also run the Portkey gateway from npm (bench/peers)")
    ap.add_argument("--perf", action="store_true",
                    help="perf record the Torrix worker (bench-out/perf.data)")
    ap.add_argument("--perf-machine", action="store_true",
                    help="where the machine's time went: samples every "
                         "CPU (perf record -a, %d Hz) during the plain and "
                         "torrix rows and prints, per process (gateway, "
                         "mock, wrk, torrix-cp), the microseconds a request "
                         "under each and the symbols that grew most; the "
                         "sampling costs a few percent, so take requests/s "
                         "from a run without it" % PERF_HZ)
    ap.add_argument("--syscalls", action="store_true",
                    help="count the gateway workers' system calls per "
                         "request (perf stat, plain and torrix); the "
                         "tracepoints slow every system call and wakeup "
                         "on the machine while those rows run, so take "
                         "requests/s figures from a run without it")
    ap.add_argument("--sched", action="store_true",
                    help="where the processes ran: traces the scheduler "
                         "(sched_switch, sched_wakeup) for 2 s of each "
                         "plain and torrix row (from its third second) and "
                         "prints each CPU's share "
                         "per process and who was woken how often per "
                         "request; slows those 2 s like --syscalls")
    ap.add_argument("--workers", default="auto",
                    help="worker_processes of both gateways: 'auto' (the "
                         "default, as deployed: the machine's CPU is the "
                         "limit) or a number (1: the gateway worker is the "
                         "limit, its cost per request sets the ratio)")
    ap.add_argument("--pin", action="store_true",
                    help="pin the gateway workers and torrix-cp to CPU 0, "
                         "wrk and the mock to CPU 1 (steadier figures)")
    ap.add_argument("--cp-paused", action="store_true",
                    help="diagnostic: one more row after torrix's, "
                         "torrix-cp-paused, the same with torrix-cp stopped "
                         "(SIGSTOP), to see what its ingest costs, paired "
                         "in each round; it catches up before the next row")
    ap.add_argument("--cp-opt", action="append", default=[],
                    metavar="NAME=VALUE",
                    help="a torrix-cp option for this run (torrix-cp.conf's "
                         "names, e.g. nice=19); repeatable")
    ap.add_argument("--scale", action="store_true",
                    help="the scale figures instead: 10 vs 1,000,000 keys "
                         "(bench/scale.py; --duration and --quick apply)")
    ap.add_argument("--instr", action="store_true",
                    help="instructions per request instead, plain vs "
                         "Torrix under callgrind (bench/instr.py; "
                         "--duration applies)")
    args = ap.parse_args()
    if any("=" not in o for o in args.cp_opt):
        ap.error("--cp-opt takes NAME=VALUE")
    if args.instr:
        import instr
        return instr.main(["--duration", str(min(args.duration, 4))])
    if args.scale:
        import scale
        return scale.main(["--duration", str(args.duration)]
                          + (["--quick"] if args.quick else []))
    if args.quick:
        args.duration = 3
    WORKERS.update({"plain": args.workers, "torrix": args.workers})
    if args.pin:
        # the gateways (and torrix-cp, whose work is the gateway's) on CPU
        # 0; the load generator and the mock upstream on CPU 1
        PIN.update({"plain": "0", "torrix": "0", "cp": "0",
                    "mock": "1", "load": "1"})
    conns = [int(c) for c in args.conns.split(",")]

    out_dir = REPO / "bench-out"
    out_dir.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="torrix-bench-"))
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / d).mkdir()

    p_mock, p_plain = torrix.free_port(), torrix.free_port()
    mock_conf = nginx_conf(tmp, "mock", mock_http(p_mock))
    plain_conf = nginx_conf(tmp, "plain", plain_http(p_mock, p_plain))

    class Upstream:
        """What the harness needs to know of the (nginx) mock upstream."""
        port = p_mock
        url = "http://127.0.0.1:%d" % p_mock

    mock = Nginx(tmp, "mock", mock_conf)
    plain = Nginx(tmp, "plain", plain_conf)
    sse_mock = MockUpstream()
    sse_mock.start()

    # torrix-cp through the test harness (data dir, admin key, API client);
    # nginx + module configured here: the same workers, keepalive to the mock
    stack = torrix.Stack(tmp / "torrix", Upstream)
    (tmp / "torrix").mkdir()
    p_torrix = stack.port
    torrix_conf = nginx_conf(tmp, "torrix",
                             torrix_http(stack.data, p_mock, p_torrix),
                             module=True)
    gw = Nginx(tmp, "torrix", torrix_conf)
    results = []
    try:
        mock.start(p_mock)
        plain.start(p_plain)
        stack.start_cp(*[a for n, _, v in map(lambda o: o.partition("="),
                                              args.cp_opt)
                         for a in ("--" + n, v)])
        if "cp" in PIN:
            subprocess.run(["taskset", "-a", "-p", "-c", PIN["cp"],
                            str(stack.cp_proc.pid)], check=True,
                           stdout=subprocess.DEVNULL)
        gw.start(p_torrix)
        api = stack.api
        key = bench_key(api)
        # the same key shape without any limit or budget: the cost of the
        # limit checks is the difference between the two torrix rows
        free = stack.api.create_key(
                                    allowed_models=["gpt-4o*", "claude-*"])
        lua = write_lua(tmp, key["key"])
        lua_free = write_lua(tmp, free["key"], "post-nolimits")
        lua_peer = write_lua(tmp, "sk-bench-upstream", "post-portkey", {
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": "http://127.0.0.1:%d/v1" % p_mock})
        peer = None
        if args.peers:
            p_peer = torrix.free_port()
            peer = start_portkey(p_peer)

        # warm up every path once
        for url in ("http://127.0.0.1:%d/v1/chat/completions" % p_mock,
                    "http://127.0.0.1:%d/v1/chat/completions" % p_plain,
                    stack.url + "/v1/chat/completions"):
            r = torrix.http("POST", url, data=request_body(),
                            headers={"Authorization": "Bearer " + key["key"],
                                     "Content-Type": "application/json"})
            assert r.status_code == 200, (url, r.status_code, r.text)

        setups = [
            ("direct", "http://127.0.0.1:%d/v1/chat/completions" % p_mock,
             mock.workers()),
            ("plain", "http://127.0.0.1:%d/v1/chat/completions" % p_plain,
             plain.workers()),
            ("torrix", stack.url + "/v1/chat/completions", gw.workers()),
            ("torrix-nolimits", stack.url + "/v1/chat/completions",
             gw.workers()),
        ]
        if peer:
            setups.append(("portkey", "http://127.0.0.1:%d/v1/chat/completions"
                           % p_peer, [peer.pid]))
        only = set(filter(None, args.only.split(",")))
        if only:
            setups = [s for s in setups if s[0] in only or s[0] == "plain"]
        names = [s[0] for s in setups]
        if args.cp_paused and "torrix" in names:
            # right after the torrix row, paired with it in each round
            i = names.index("torrix")
            setups.insert(i + 1, ("torrix-cp-paused",) + setups[i][1:])
        runs, mprofs = {}, {}
        for rnd in range(1 if args.perf or args.perf_machine
                         else args.rounds):
            for c in conns:
                for name, url, pids in setups:
                    # the recorders of this row, stopped when it ends
                    recs = []
                    if args.perf and name in ("torrix", "plain"):
                        recs.append(subprocess.Popen(
                            ["perf", "record", "-e", "cpu-clock",
                             "--call-graph", "dwarf,16384", "-F", "2000",
                             "-o", str(out_dir / ("perf-%s.data" % name)),
                             "-p", ",".join(map(str, pids))],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL))
                    mprof = None
                    if args.perf_machine and name in ("torrix", "plain",
                                                      "torrix-cp-paused"):
                        mprof = out_dir / ("machine-%s-%d.data" % (name, c))
                        recs.append(subprocess.Popen(
                            ["perf", "record", "-a", "-e", "cpu-clock",
                             "-F", str(PERF_HZ), "-o", str(mprof)],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL))
                    if args.syscalls and name in ("torrix", "plain"):
                        recs.append(subprocess.Popen(
                            ["perf", "stat", "-x,", "-e",
                             "raw_syscalls:sys_enter,context-switches",
                             "-p", ",".join(map(str, pids)), "-o",
                             str(out_dir / ("stat-%s-%d.txt" % (name, c)))],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL))
                        # the whole machine: wakeups and the IPIs that
                        # wake an idle CPU, which a VM pays dearly for
                        recs.append(subprocess.Popen(
                            ["perf", "stat", "-a", "-x,", "-e",
                             "sched:sched_wakeup,irq_vectors:"
                             "call_function_single_entry", "-o",
                             str(out_dir / ("wake-%s-%d.txt" % (name, c)))],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL))
                    sched = None
                    if args.sched and name in ("plain", "torrix"):
                        sched = out_dir / ("sched-%s-%d.data" % (name, c))
                        # 2 s from the row's third second (shorter rows:
                        # from a quarter of it, for half of it)
                        lag = min(2.0, args.duration / 4)
                        span = min(2.0, args.duration / 2)
                        sched_rec = subprocess.Popen(
                            ["perf", "record", "-q", "-a",
                             "-D", str(int(lag * 1000)),
                             "-e", "sched:sched_switch,sched:sched_wakeup",
                             "-o", str(sched), "--", "sleep",
                             "%.2f" % (lag + span)],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
                    paused = name == "torrix-cp-paused"
                    if paused:
                        stack.cp_proc.send_signal(signal.SIGSTOP)
                    r = wrk(url, {"torrix-nolimits": lua_free,
                                  "portkey": lua_peer}.get(name, lua),
                            c, args.duration, pids,
                            {"mock": [] if name == "direct"
                             else mock.workers(),
                             "cp": [stack.cp_proc.pid]})
                    # the recorders stop with the row, before a paused
                    # torrix-cp catches up
                    for pr in recs:
                        pr.send_signal(signal.SIGINT)
                        pr.wait(30)
                    if paused:
                        stack.cp_proc.send_signal(signal.SIGCONT)
                        caught_up(api)
                    if mprof:
                        mp = machine_profile(
                            mprof, r["requests"], {
                                "gateway": pids, "mock": mock.workers(),
                                "torrix-cp": [stack.cp_proc.pid]})
                        mprofs[(name, c)] = mp
                        # in the JSON line: each group's total and its
                        # costliest symbols
                        r["machine_profile"] = {
                            g: {"total_us": sum(v.values()),
                                "top_us": dict(sorted(
                                    v.items(), key=lambda x: -x[1])[:25])}
                            for g, v in mp.items()}
                        if name == "torrix" and ("plain", c) in mprofs:
                            print("    where the machine's time went, c=%d "
                                  "(plain -> torrix):" % c)
                            machine_profile_diff(mprofs[("plain", c)], mp)
                        if name == "torrix-cp-paused" \
                                and ("torrix", c) in mprofs:
                            print("    what torrix-cp's ingest cost, c=%d "
                                  "(torrix-cp stopped -> ingesting):" % c)
                            machine_profile_diff(mp, mprofs[("torrix", c)])
                    if sched:
                        sched_rec.wait(60)
                        r["sched"] = sched_report(
                            sched, r["rps"], {
                                "gateway": pids, "mock": mock.workers(),
                                "torrix-cp": [stack.cp_proc.pid]})
                        print("    %s c=%d: %s" % (name, c, r["sched"]))
                    if args.syscalls and name in ("torrix", "plain"):
                        for line in ((out_dir / ("stat-%s-%d.txt" % (name, c))
                                      ).read_text().splitlines()
                                     + (out_dir / ("wake-%s-%d.txt"
                                                   % (name, c))
                                        ).read_text().splitlines()):
                            f = line.split(",")
                            if len(f) > 2 and f[0].isdigit():
                                r[f[2].split(":")[-1] + "_per_req"] = \
                                    int(f[0]) / max(r["requests"], 1)
                        print("    %s c=%d: %s" % (name, c, {
                            k: round(v, 2) for k, v in r.items()
                            if k.endswith("_per_req")}))
                    r.update({"setup": name, "conns": c, "round": rnd})
                    runs.setdefault((name, c), []).append(r)
                    print("  round %d %-15s c=%-3d %9.0f req/s  p50 %6.3f ms"
                          "  p99 %6.3f ms  cpu %5.1f us/req  non2xx %d"
                          % (rnd, name, c, r["rps"], r["p50_ms"] or 0,
                             r["p99_ms"] or 0, r["cpu_us_per_req"] or 0,
                             r["non_2xx"]), flush=True)
                    m = r["machine_us"]
                    if m["busy"] is not None:
                        print("      machine us/req: busy %.1f (wrk %.1f, "
                              "mock %.1f, gateway %.1f (kernel %.1f), "
                              "torrix-cp %.1f, "
                              "rest %.1f) idle %.1f steal %.1f; "
                              "TCP segments/req %.2f; gateway page "
                              "faults/req %.3f"
                              % (m["busy"], m["wrk"], m["mock"],
                                 r["cpu_us_per_req"], m["gateway_sys"],
                                 m["cp"], m["busy"] - m["wrk"] - m["mock"]
                                 - r["cpu_us_per_req"] - m["cp"],
                                 m["idle"], m["steal"],
                                 m["tcp_segments"], m["gateway_faults"]),
                              flush=True)
        # the median round of each setup, by requests/s; and the median of
        # the ratios to plain nginx measured in the same round, seconds
        # apart, which the machine's drift (see README) disturbs less
        for c in conns:
            plain_by_round = {x["round"]: x["rps"] for x in runs[("plain", c)]}
            for name, _, _ in setups:
                rs = sorted(runs[(name, c)], key=lambda x: x["rps"])
                pair = sorted(x["rps"] / plain_by_round[x["round"]]
                              for x in rs if plain_by_round.get(x["round"]))
                med = dict(rs[len(rs) // 2])
                med["paired_vs_plain"] = pair[len(pair) // 2] if pair else None
                results.append(med)

        # unloaded latency: one connection, so no queueing behind the CPU
        # in interleaved pairs, the median pair reported: the VM's speed
        # drifts between runs seconds apart (see README)
        lat, pairs = {}, []
        for _ in range(3):
            one = {}
            for name, url, pids in setups:
                if name in ("plain", "torrix"):
                    one[name] = wrk(url, lua, 1, max(2, args.duration // 4),
                                    pids)
            if len(one) == 2:
                pairs.append(one)
        if pairs:
            pairs.sort(key=lambda o: o["torrix"]["p50_ms"]
                       - o["plain"]["p50_ms"])
            lat = pairs[len(pairs) // 2]
        added_p50_us = (lat["torrix"]["p50_ms"] - lat["plain"]["p50_ms"]) \
            * 1000 if len(lat) == 2 else None

        time.sleep(1.0)
        health = api.ok("GET", "/health")
        cp_cpu = cpu_ticks([stack.cp_proc.pid]) / os.sysconf("SC_CLK_TCK")

        # SSE through the same gateway, against the mock that paces frames
        api.ok("PUT", "/providers/openai", {"base_url": sse_mock.url + "/v1"})
        time.sleep(0.5)
        sse = sse_check(stack, key["key"], sse_mock.port)
        rss = [rss_kb(p) for p in gw.workers()]
        # disk the store took (torrix-cp writes every byte of its growth
        # into new page-cache pages, the larger part of its CPU a run)
        store_bytes = os.stat(stack.data / "store" / "data.mdb").st_blocks \
            * 512
    finally:
        if peer:
            peer.terminate()
            peer.wait(10)
        gw.stop()
        stack.close()
        plain.stop()
        mock.stop()
        sse_mock.stop()
        # the store and spool of a run are gigabytes: not kept
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print("Gateways: worker_processes %s (%d CPUs); CPU us/req: of the "
          "gateway's workers" % (args.workers, os.cpu_count()))
    print("| setup | conns | req/s | p50 ms | p99 ms | CPU us/req |"
          " vs plain | vs plain, paired by round |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for c in conns:
        base = next(r for r in results
                    if r["setup"] == "plain" and r["conns"] == c)
        for r in results:
            if r["conns"] != c:
                continue
            r["ratio_vs_plain"] = r["rps"] / base["rps"]
            r["added_p50_us"] = ((r["p50_ms"] or 0) - (base["p50_ms"] or 0)) \
                * 1000
            print("| %s | %d | %.0f | %.3f | %.3f | %.1f | %.2fx | %.2fx |"
                  % (r["setup"], c, r["rps"], r["p50_ms"] or 0,
                     r["p99_ms"] or 0, r["cpu_us_per_req"] or 0,
                     r["ratio_vs_plain"], r["paired_vs_plain"] or 0))
    for c in conns:
        peer_r = [r for r in results if r["setup"] == "portkey"
                  and r["conns"] == c]
        tor = [r for r in results if r["setup"] == "torrix"
               and r["conns"] == c]
        if peer_r and tor and peer_r[0]["rps"]:
            tor[0]["ratio_vs_portkey"] = tor[0]["rps"] / peer_r[0]["rps"]
            print("c=%d: Torrix %.1fx the requests/s of the Portkey gateway"
                  % (c, tor[0]["ratio_vs_portkey"]))
    print()
    if added_p50_us is not None:
        print("One connection: p50 %.3f ms plain, %.3f ms Torrix: Torrix adds "
              "%.0f us at p50 (p99 %.3f vs %.3f ms)"
              % (lat["plain"]["p50_ms"], lat["torrix"]["p50_ms"], added_p50_us,
                 lat["plain"]["p99_ms"], lat["torrix"]["p99_ms"]))
    print("SSE: time to first byte %.2f ms direct, %.2f ms through Torrix "
          "(%+.2f ms); max frame lag %.2f ms; frames delayed: %s"
          % (sse["ttfb_direct_ms"], sse["ttfb_torrix_ms"],
             sse["added_ttfb_ms"], sse["max_frame_lag_ms"],
             "yes" if sse["frames_delayed"] else "no"))
    ingested = (health.get("ingest") or {}).get("ingested") or 0
    cp_us_per_run = cp_cpu * 1e6 / ingested if ingested else 0
    print("torrix-cp ingested alongside: %s, %.1f s CPU in all (%.2f us a "
          "run); gateway worker RSS %s kB"
          % (json.dumps(health.get("ingest")), cp_cpu,
             cp_us_per_run, rss))
    store_per_run = store_bytes / ingested if ingested else 0
    print("torrix-cp's store grew %.0f bytes a run" % store_per_run)

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open(out_dir / "results.jsonl", "a") as f:
        for r in results:
            r["time"] = stamp
            r["workers"] = args.workers
            f.write(json.dumps(r) + "\n")
        f.write(json.dumps({"time": stamp, "sse": sse,
                            "c1_plain": lat.get("plain"),
                            "c1_torrix": lat.get("torrix"),
                            "added_p50_us_c1": added_p50_us,
                            "ingest": health.get("ingest"),
                            "cp_us_per_run": cp_us_per_run,
                            "store_bytes_per_run": store_per_run,
                            "worker_rss_kb": rss}) + "\n")
    print("results appended to %s" % (out_dir / "results.jsonl"))


if __name__ == "__main__":
    main()
