#!/usr/bin/python3
"""Torrix scale figures: the same gateway with 10 keys and with 1,000,000.

For each key count (default 10, then 1,000,000) in a fresh data dir under
/tmp: torrix-cp is started once (store, admin key, an org and a project),
stopped, `torrix-cp keys seed N` writes the keys offline, torrix-cp starts
again (its start resyncs the snapshot), and the last seeded key gets the
limits bench.py's key has.  Then, all on loopback:

  a. admission: the Torrix gateway of bench.py (1 worker, everything on,
     keepalive to an nginx mock) under wrk -c32: req/s, p50/p99 and CPU
     per request of the worker; and the same with a random unknown key per
     request (401 after hashing and the khash lookup: cold lookups);
  b. write -> enforced: PATCH the key's allowed_models to exclude the model
     (then DELETE = revoke, on keys made for it) while a thread polls the
     gateway every 1 ms on a keep-alive connection; time from sending the
     API call to the first 403/401, over --trials trials;
  c. memory: a 2-worker gateway after a wrk run and after the unknown-key
     sweep: RSS/PSS/shared of each worker (/proc/PID/smaps_rollup) and of
     its snapshot/data.mdb mapping (/proc/PID/smaps); data.mdb size;
  d. torrix-cp ingest during (a): runs/s from GET /api/v1/health, backlog
     and drain time, CPU per run; its ceiling: torrix-cp SIGSTOPped through
     a wrk run, then the backlog drain timed; spool bytes per 1,000 runs
     counted from the frames (files are preallocated, so their sizes say
     nothing): each new spool file is hard-linked aside while it exists, so
     torrix-cp's unlink after ingest does not lose it, and read after the
     run.

Both key counts are set up first and (a) runs in --rounds interleaved
rounds (the median is shown), so drift on a shared machine hits both.
Prints a table, appends one JSON line per key count to
bench-out/results.jsonl.  Every run is bounded in time.

    ./build.sh bench --scale [--duration S] [--quick]
    python3 bench/scale.py [--keys 10,1000000] [--duration S] [--trials N]
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402  (Nginx, wrk, cpu_ticks, nginx_conf, ...)
import torrix  # noqa: E402  (imported by bench from t/)

MODEL_ALLOWED = ["gpt-4o*", "claude-*"]
MODEL_EXCLUDED = ["claude-*"]          # the benchmark asks for gpt-4o-mini

SWEEP_LUA = """\
local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local body = "%s"
local n = 0
setup = function(thread) n = n + 1; thread:set("seed", n) end
init = function(args) math.randomseed(os.time() * 1000 + seed) end
request = function()
    local t = {}
    for i = 1, 43 do
        local r = math.random(1, 64)
        t[i] = chars:sub(r, r)
    end
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["Authorization"] = "Bearer sk-torrix-" .. table.concat(t)
    return wrk.format("POST", nil, nil, body)
end
"""


# -- small helpers -------------------------------------------------------

def log(msg):
    print("== " + msg, file=sys.stderr, flush=True)


def pct(values, p):
    v = sorted(values)
    if not v:
        return None
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def file_size(path):
    st = os.stat(path)
    return {"bytes": st.st_size, "disk_bytes": st.st_blocks * 512}


def lmdb_stat(env):
    """Pages used, free pages and the keys/khash trees of an LMDB env
    (mdb_stat, lmdb-utils); {} when mdb_stat is missing."""
    try:
        out = subprocess.run(["mdb_stat", "-a", "-ef", str(env)],
                             capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    res, section = {}, ""
    for line in out.splitlines():
        if not line.startswith(" "):
            section = line.replace("Status of ", "").strip()
            continue
        k, _, v = line.strip().partition(": ")
        if k == "Number of pages used":
            res["pages_used"] = int(v)
        elif k == "Page size":
            res["page_size"] = int(v)
        elif k == "Free pages":
            res["free_pages"] = int(v)
        elif section in ("keys", "khash") and k in ("Tree depth",
                                                    "Leaf pages"):
            res["%s_%s" % (section, k.split()[0].lower())] = int(v)
    return res


def smaps_rollup(pid):
    out = {}
    for line in Path("/proc/%d/smaps_rollup" % pid).read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            out[parts[0].rstrip(":")] = int(parts[1])
    return out


def smaps_mapping(pid, suffix):
    """Summed kB fields of the mappings whose path ends with suffix."""
    out, cur = {}, False
    for line in Path("/proc/%d/smaps" % pid).read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if not parts[0].endswith(":"):          # a mapping header
            cur = len(parts) >= 6 and parts[-1].endswith(suffix)
            continue
        if cur and len(parts) == 3 and parts[2] == "kB":
            k = parts[0].rstrip(":")
            out[k] = out.get(k, 0) + int(parts[1])
    return out


def worker_memory(pids):
    rows = []
    for pid in pids:
        r = smaps_rollup(pid)
        m = smaps_mapping(pid, "/snapshot/data.mdb")
        # the worker's spool files (.txs, kept mapped a few seconds after
        # they fill): file pages, but "private" in smaps while no other
        # process maps them
        sp = smaps_mapping(pid, ".txs")
        rows.append({
            "pid": pid,
            "rss_kb": r.get("Rss", 0), "pss_kb": r.get("Pss", 0),
            "shared_kb": r.get("Shared_Clean", 0) + r.get("Shared_Dirty", 0),
            "private_kb": r.get("Private_Clean", 0)
            + r.get("Private_Dirty", 0),
            "snapshot_size_kb": m.get("Size", 0),
            "snapshot_rss_kb": m.get("Rss", 0),
            "snapshot_pss_kb": m.get("Pss", 0),
            "snapshot_shared_kb": m.get("Shared_Clean", 0)
            + m.get("Shared_Dirty", 0),
            "spool_rss_kb": sp.get("Rss", 0),
            "anon_kb": r.get("Anonymous", 0),
        })
    return rows


# -- spool frames ----------------------------------------------------------

class SpoolKeeper(threading.Thread):
    """Hard-links every new spool file into `keep` while it exists, so the
    frames can be counted after torrix-cp ingested and unlinked it."""

    def __init__(self, spool, keep):
        super().__init__(daemon=True)
        self.spool, self.keep = Path(spool), Path(keep)
        self.keep.mkdir(parents=True, exist_ok=True)
        self.seen = set()
        self.halt = threading.Event()
        self.missed = 0

    def scan(self):
        try:
            names = os.listdir(self.spool)
        except OSError:
            return
        for name in names:
            if name.endswith(".txs") and name not in self.seen:
                try:
                    os.link(self.spool / name, self.keep / name)
                    self.seen.add(name)
                except FileNotFoundError:
                    self.missed += 1
                except FileExistsError:
                    self.seen.add(name)

    def run(self):
        while not self.halt.is_set():
            self.scan()
            self.halt.wait(0.02)

    def stop(self):
        self.halt.set()
        self.join(5)
        self.scan()


def spool_bytes(keep):
    """(frames, frame bytes incl. headers and padding, files, file bytes) of
    the kept spool files (tx_spool.h: 64-byte header, then len|crc|payload
    padded to 8; len 0 = nothing yet, 0xffffffff = sealed)."""
    frames = used = files = size = 0
    for f in sorted(Path(keep).glob("*.txs")):
        data = f.read_bytes()
        files += 1
        size += len(data)
        off = 64
        while off + 8 <= len(data):
            ln = int.from_bytes(data[off:off + 4], "little")
            if ln == 0 or ln == 0xffffffff:
                break
            step = (8 + ln + 7) & ~7
            frames += 1
            used += step
            off += step
    return frames, used, files, size


# -- torrix-cp -------------------------------------------------------------

def start_cp(stack, timeout):
    """Stack.start_cp with a longer health timeout (a start resyncs the
    whole snapshot: seconds with 1,000,000 keys).  Returns the seconds
    from exec to a healthy API."""
    n = len(stack.cp_logs)
    out = stack.tmp / ("cp.%d.out" % n)
    err = stack.tmp / ("cp.%d.err" % n)
    stack.cp_logs.append((out, err))
    t0 = time.monotonic()
    with open(out, "wb") as fo, open(err, "wb") as fe:
        stack.cp_proc = subprocess.Popen(
            [str(torrix.CP_BIN), "--data", str(stack.data),
             "--listen", "127.0.0.1:%d" % stack.cp_port, "--foreground"],
            env=stack.cp_env(), stdout=fo, stderr=fe,
            stdin=subprocess.DEVNULL)
    stack.cp_expect_rc = 0

    def healthy():
        if stack.cp_proc.poll() is not None:
            raise AssertionError("torrix-cp exited with %d:\n%s" % (
                stack.cp_proc.returncode, stack.cp_output(n)))
        return torrix.port_open(stack.cp_port)

    torrix.wait_until(healthy, timeout, 0.02, "torrix-cp listening")
    el = time.monotonic() - t0
    stack.admin_key = (stack.data / "admin.key").read_text().strip()
    return el


def health(stack):
    return stack.api.ok("GET", "/health")["ingest"]


# -- (b) write -> enforced --------------------------------------------------

class Probe:
    """POSTs the chat request on one keep-alive connection to the gateway."""

    def __init__(self, port, secret):
        self.port, self.secret = port, secret
        self.body = json.dumps({"model": "gpt-4o-mini", "max_tokens": 16,
                                "messages": [{"role": "user",
                                              "content": "hi"}]})
        self.conn = None

    def status(self):
        for attempt in (0, 1):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(
                        "127.0.0.1", self.port, timeout=5)
                self.conn.request("POST", "/v1/chat/completions", self.body,
                                  {"Authorization": "Bearer " + self.secret,
                                   "Content-Type": "application/json"})
                r = self.conn.getresponse()
                r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.close()
                return r.status
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        return None

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None


class Api:
    """The admin API on one keep-alive connection (no client overhead in
    the timing beyond one request)."""

    def __init__(self, stack):
        self.stack = stack
        self.conn = http.client.HTTPConnection("127.0.0.1", stack.cp_port,
                                               timeout=30)

    def call(self, method, path, body=None):
        data = json.dumps(body) if body is not None else None
        self.conn.request(method, "/api/v1" + path, data,
                          {"Authorization": "Bearer " + self.stack.admin_key,
                           "Content-Type": "application/json"})
        r = self.conn.getresponse()
        text = r.read()
        assert r.status in (200, 201, 204), (method, path, r.status, text)
        return json.loads(text) if text else None

    def close(self):
        self.conn.close()


def timed_flip(probe, want, action):
    """Polls probe every 1 ms from just before action() until it answers one
    of `want`; returns (ms to enforced, ms the API call took)."""
    hit = [None]
    go = threading.Event()
    deadline = time.perf_counter() + 5.0

    def poll():
        go.wait(5)
        nxt = time.perf_counter()
        while time.perf_counter() < deadline:
            st = probe.status()
            if st in want:
                hit[0] = time.perf_counter()
                return
            nxt += 0.001
            delay = nxt - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                nxt = time.perf_counter()

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    t0 = time.perf_counter()
    go.set()
    action()
    api_ms = (time.perf_counter() - t0) * 1000
    th.join(6)
    if hit[0] is None:
        raise AssertionError("not enforced within 5 s")
    return (hit[0] - t0) * 1000, api_ms


def wait_status(probe, status, timeout=5.0):
    torrix.wait_until(lambda: probe.status() == status, timeout, 0.001,
                      "gateway status %d" % status)


def enforcement(stack, key_id, secret, project_id, trials):
    api = Api(stack)
    out = {"patch_enforced_ms": [], "patch_api_ms": [],
           "revoke_enforced_ms": [], "revoke_api_ms": []}
    probe = Probe(stack.port, secret)
    try:
        for _ in range(trials):
            wait_status(probe, 200)
            enf, ms = timed_flip(probe, (403,), lambda: api.call(
                "PATCH", "/keys/" + key_id,
                {"allowed_models": MODEL_EXCLUDED}))
            out["patch_enforced_ms"].append(enf)
            out["patch_api_ms"].append(ms)
            api.call("PATCH", "/keys/" + key_id,
                     {"allowed_models": MODEL_ALLOWED})
        wait_status(probe, 200)
        probe.close()

        fresh = [api.call("POST", "/keys", {"name": "revoke-trial",
                                           "project_id": project_id,
                                           "allowed_models": MODEL_ALLOWED})
                 for _ in range(trials)]
        for k in fresh:
            p = Probe(stack.port, k["key"])
            wait_status(p, 200)
            enf, ms = timed_flip(p, (401,), lambda: api.call(
                "DELETE", "/keys/" + k["id"]))
            out["revoke_enforced_ms"].append(enf)
            out["revoke_api_ms"].append(ms)
            p.close()
    finally:
        probe.close()
        api.close()
    summary = {}
    for k, v in out.items():
        summary[k] = {"median": statistics.median(v), "p90": pct(v, 90),
                      "max": max(v), "n": len(v)}
    return summary


# -- one key count -----------------------------------------------------------

def gw_conf(tmp, name, data, mock_port, port, workers):
    """bench.py's Torrix gateway; with 2 workers, reuseport so both get
    connections."""
    conf = bench.nginx_conf(tmp, name, (
        "    torrix_snapshot %(d)s/snapshot;\n"
        "    torrix_spool %(d)s/spool size=8m rotate=10s;\n"
        "    upstream mock_up { server 127.0.0.1:%(m)d; keepalive 64; }\n"
        "    server {\n"
        "        listen 127.0.0.1:%(p)d backlog=4096%(rp)s;\n"
        "        keepalive_requests 100000;\n"
        "        location /v1/ {\n"
        "            torrix on;\n"
        "            include %(r)s/conf/torrix_proxy.conf;\n"
        "        }\n"
        "    }\n") % {"d": data, "m": mock_port, "p": port,
                     "r": bench.REPO,
                     "rp": " reuseport" if workers > 1 else ""},
        module=True)
    return conf.replace("worker_processes 1;",
                        "worker_processes %d;" % workers)


class Size:
    """One key count: its data dir, torrix-cp, the seeded key, a gateway."""

    def __init__(self, n, tmp, upstream, args):
        self.n, self.upstream, self.args = n, upstream, args
        self.d = tmp / ("keys-%d" % n)
        self.d.mkdir()
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.d / sub).mkdir()
        self.stack = torrix.Stack(self.d, upstream)
        self.gws = []
        self.gw = None
        self.rounds = []
        self.res = {"bench": "scale", "keys": n, "duration_s": args.duration,
                    "conns": 32, "nproc": os.cpu_count(),
                    "loadavg_before": os.getloadavg()[0]}

    @property
    def url(self):
        return self.stack.url + "/v1/chat/completions"

    def gateway(self, name, workers):
        gw = bench.Nginx(self.d, name, gw_conf(
            self.d, name, self.stack.data, self.upstream.port,
            self.stack.port, workers))
        self.gws.append(gw)
        gw.start(self.stack.port)
        torrix.wait_until(lambda: len(gw.workers()) == workers, 10, 0.02,
                          "%d workers" % workers)
        return gw

    def stop_gateway(self, gw):
        self.gws.remove(gw)
        gw.stop()

    def setup(self):
        """First start (store, admin key, tenants as bench.py), seed, start
        again, give the last key bench.py's limits, start the gateway."""
        stack, n = self.stack, self.n
        stack.start_cp()
        api = stack.api
        org = api.create("orgs", name="scale", spend_cap_usd=1e6)
        self.prj = api.create("projects", slug="scale", name="scale",
                              org_id=org["id"], daily_cap_usd=1e6)
        api.ok("PATCH", "/settings", {"sample_rate": 0.01})
        stack.stop_cp()
        store0 = file_size(stack.data / "store" / "data.mdb")["bytes"]

        log("%d keys: seeding" % n)
        t0 = time.monotonic()
        p = subprocess.run([str(torrix.CP_BIN), "keys", "seed", str(n),
                            "--data", str(stack.data),
                            "--project", self.prj["id"]],
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, "seed failed: %s" % p.stderr
        seed = json.loads(p.stdout)
        self.res["seed"] = {
            "seconds": seed["seconds"],
            "wall_s": time.monotonic() - t0,
            "store_growth_bytes": file_size(
                stack.data / "store" / "data.mdb")["bytes"] - store0,
            "store": file_size(stack.data / "store" / "data.mdb"),
            "snapshot": file_size(stack.data / "snapshot" / "data.mdb"),
            "snapshot_lmdb": lmdb_stat(stack.data / "snapshot"),
            "store_lmdb": lmdb_stat(stack.data / "store"),
        }
        self.key_id, self.secret = seed["last_id"], seed["last_key"]
        stack.secrets.add(self.secret)

        self.res["cp_start_s"] = start_cp(stack, 180)
        log("%d keys: torrix-cp up in %.1f s" % (n, self.res["cp_start_s"]))
        api.ok("PATCH", "/keys/" + self.key_id, {
            "allowed_models": MODEL_ALLOWED, "rpm": 10 ** 9,
            "tpm": 10 ** 12, "daily_cap_usd": 1e6,
            "monthly_budget_usd": 1e6})
        self.lua = bench.write_lua(self.d, self.secret)
        self.sweep = self.d / "sweep.lua"
        self.sweep.write_text(SWEEP_LUA % bench.request_body()
                              .replace("\\", "\\\\").replace('"', '\\"'))

        self.gw = self.gateway("gw1", 1)
        r = torrix.http("POST", self.url, data=bench.request_body(),
                        headers={"Authorization": "Bearer " + self.secret,
                                 "Content-Type": "application/json"})
        assert r.status_code == 200, (r.status_code, r.text)

    def round(self, rnd):
        """(a) + (d): valid key under wrk, the ingest and spool alongside;
        then the unknown-key sweep."""
        args, stack, n = self.args, self.stack, self.n
        keep = self.d / ("spool-kept-%d" % rnd)
        keeper = SpoolKeeper(stack.data / "spool", keep)
        keeper.start()
        h0, c0 = health(stack), bench.cpu_ticks([stack.cp_proc.pid])
        t0 = time.monotonic()
        log("%d keys, round %d: wrk -c32 %ds" % (n, rnd + 1, args.duration))
        a = bench.wrk(self.url, self.lua, 32, args.duration,
                      self.gw.workers())
        t_run = time.monotonic() - t0
        h1 = health(stack)
        target = h0["ingested"] + a["requests"]
        last, _ = torrix.wait_until(
            lambda: (lambda h: h if h["ingested"] >= target else None)(
                health(stack)), 30, 0.05, "ingest to catch up")
        drain = time.monotonic() - t0 - t_run
        c1 = bench.cpu_ticks([stack.cp_proc.pid])
        keeper.stop()
        frames, used, files, fsize = spool_bytes(keep)
        shutil.rmtree(keep, ignore_errors=True)
        hz = os.sysconf("SC_CLK_TCK")
        ingest = {
            "runs_during_wrk": h1["ingested"] - h0["ingested"],
            "runs_per_s": (h1["ingested"] - h0["ingested"]) / t_run,
            "backlog_at_end": target - h1["ingested"],
            "drain_s": drain,
            "cp_cpu_us_per_run": (c1 - c0) / hz * 1e6
            / max(1, last["ingested"] - h0["ingested"]),
            "torn": last["torn"], "duplicates": last["duplicates"],
        }
        spool = {"frames": frames, "frame_bytes": used,
                 "files": files, "file_bytes": fsize,
                 "files_missed": keeper.missed}
        secs = max(2, args.duration // 2)
        log("%d keys, round %d: unknown-key sweep %ds" % (n, rnd + 1, secs))
        u = bench.wrk(self.url, self.sweep, 32, secs, self.gw.workers())
        self.rounds.append({"admission": a, "unknown_key": u,
                            "ingest": ingest, "spool": spool})

    def summarize_rounds(self):
        """The median round by req/s; spool totals over every round."""
        rs = sorted(self.rounds, key=lambda r: r["admission"]["rps"])
        mid = rs[len(rs) // 2]
        us = sorted(self.rounds, key=lambda r: r["unknown_key"]["rps"])
        self.res["rounds"] = len(rs)
        self.res["admission"] = mid["admission"]
        self.res["admission_rounds_rps"] = [r["admission"]["rps"]
                                            for r in self.rounds]
        self.res["admission_rounds_cpu_us"] = [
            r["admission"]["cpu_us_per_req"] for r in self.rounds]
        self.res["unknown_key"] = us[len(us) // 2]["unknown_key"]
        self.res["ingest"] = mid["ingest"]
        frames = sum(r["spool"]["frames"] for r in self.rounds)
        used = sum(r["spool"]["frame_bytes"] for r in self.rounds)
        self.res["spool"] = {
            "frames": frames, "frame_bytes": used,
            "bytes_per_1000_runs": used * 1000.0 / frames if frames else None,
            "files": sum(r["spool"]["files"] for r in self.rounds),
            "files_missed": sum(r["spool"]["files_missed"]
                                for r in self.rounds),
            "sample_rate": 0.01,
        }

    def capacity(self):
        """torrix-cp stopped (SIGSTOP) through a wrk run, then the backlog
        drain timed: the ingest ceiling rather than the serving rate."""
        stack, secs = self.stack, max(2, self.args.duration // 2)
        h0 = health(stack)
        pid = stack.cp_proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            log("%d keys: torrix-cp stopped, wrk %ds" % (self.n, secs))
            a = bench.wrk(self.url, self.lua, 32, secs, self.gw.workers())
        finally:
            os.kill(pid, signal.SIGCONT)
        target = h0["ingested"] + a["requests"]
        c0 = bench.cpu_ticks([pid])
        t0 = time.monotonic()
        torrix.wait_until(lambda: health(stack)["ingested"] >= target, 60,
                          0.01, "backlog drained")
        el = time.monotonic() - t0
        hz = os.sysconf("SC_CLK_TCK")
        self.res["ingest_drain"] = {
            "backlog_runs": a["requests"], "seconds": el,
            "runs_per_s": a["requests"] / el,
            "cp_cpu_us_per_run": (bench.cpu_ticks([pid]) - c0) / hz * 1e6
            / a["requests"]}

    def finish(self):
        """(b) with the 1-worker gateway, then (c) with 2 workers."""
        n, args = self.n, self.args
        log("%d keys: write -> enforced, %d trials" % (n, args.trials))
        self.res["enforce"] = enforcement(self.stack, self.key_id,
                                          self.secret, self.prj["id"],
                                          args.trials)
        self.stop_gateway(self.gw)

        gw2 = self.gateway("gw2", 2)
        pids = gw2.workers()
        secs = max(2, args.duration // 2)
        log("%d keys: 2 workers, wrk %ds + sweep %ds" % (n, secs, secs))
        before = {p: bench.cpu_ticks([p]) for p in pids}
        bench.wrk(self.url, self.lua, 32, secs, pids)
        served = [bench.cpu_ticks([p]) - before[p] for p in pids]
        mem_run = worker_memory(pids)
        bench.wrk(self.url, self.sweep, 32, secs, pids)
        mem_sweep = worker_memory(pids)
        cp = worker_memory([self.stack.cp_proc.pid])[0]
        self.res["memory"] = {
            "worker_cpu_ticks_in_wrk": served,
            "after_wrk": mem_run, "after_sweep": mem_sweep,
            "cp_after_sweep": cp,
            "snapshot": file_size(self.stack.data / "snapshot" / "data.mdb"),
        }
        self.stop_gateway(gw2)
        self.res["loadavg_after"] = os.getloadavg()[0]

    def close(self):
        for g in list(self.gws):
            try:
                g.stop()
            except Exception as e:          # keep cleaning up
                print("nginx stop: %s" % e, file=sys.stderr)
        self.gws = []
        self.res.setdefault("problems", []).extend(self.stack.close())
        if not self.args.keep:
            shutil.rmtree(self.stack.data, ignore_errors=True)


# -- output -------------------------------------------------------------------

def mb(kb):
    return "%.1f MiB" % (kb / 1024.0)


def table(results):
    cols = [r["keys"] for r in results]

    def row(label, fn):
        vals = []
        for r in results:
            try:
                vals.append(fn(r))
            except (KeyError, TypeError, IndexError, ZeroDivisionError):
                vals.append("-")
        print("| %s | %s |" % (label, " | ".join(vals)))

    print()
    print("| figure | " + " | ".join("%s keys" % format(c, ",")
                                     for c in cols) + " |")
    print("| --- |" + " --- |" * len(cols))
    row("seed: seconds (store / snapshot data.mdb)", lambda r: "%.1f s (%s / %s)"
        % (r["seed"]["seconds"], mb(r["seed"]["store"]["bytes"] / 1024),
           mb(r["seed"]["snapshot"]["bytes"] / 1024)))
    row("snapshot: pages used / free, keys and khash depth",
        lambda r: "%d / %d, %d and %d" % (
            r["seed"]["snapshot_lmdb"]["pages_used"],
            r["seed"]["snapshot_lmdb"]["free_pages"],
            r["seed"]["snapshot_lmdb"]["keys_tree"],
            r["seed"]["snapshot_lmdb"]["khash_tree"]))
    row("torrix-cp start (snapshot resync)",
        lambda r: "%.2f s" % r["cp_start_s"])
    row("valid key, c=32: req/s (median of rounds)",
        lambda r: "%.0f (%s)" % (r["admission"]["rps"], ", ".join(
            "%.0f" % x for x in r["admission_rounds_rps"])))
    row("valid key: p50 / p99 ms", lambda r: "%.3f / %.3f" % (
        r["admission"]["p50_ms"], r["admission"]["p99_ms"]))
    row("valid key: worker CPU us/req",
        lambda r: "%.1f" % r["admission"]["cpu_us_per_req"])
    row("unknown key (401): req/s, CPU us/req", lambda r: "%.0f, %.1f" % (
        r["unknown_key"]["rps"], r["unknown_key"]["cpu_us_per_req"]))
    row("PATCH -> 403 enforced: median / max ms", lambda r: "%.2f / %.2f" % (
        r["enforce"]["patch_enforced_ms"]["median"],
        r["enforce"]["patch_enforced_ms"]["max"]))
    row("PATCH API reply: median / max ms", lambda r: "%.2f / %.2f" % (
        r["enforce"]["patch_api_ms"]["median"],
        r["enforce"]["patch_api_ms"]["max"]))
    row("DELETE -> 401 enforced: median / max ms", lambda r: "%.2f / %.2f" % (
        r["enforce"]["revoke_enforced_ms"]["median"],
        r["enforce"]["revoke_enforced_ms"]["max"]))
    for phase in ("after_wrk", "after_sweep"):
        row("2 workers %s: RSS / PSS / shared per worker" % phase.replace(
            "_", " "), lambda r: "; ".join(
                "%s / %s / %s" % (mb(w["rss_kb"]), mb(w["pss_kb"]),
                                  mb(w["shared_kb"]))
                for w in r["memory"][phase]))
        row("2 workers %s: heap (anonymous) / spool file mappings RSS"
            " per worker" % phase.replace("_", " "), lambda r: "; ".join(
                "%s / %s" % (mb(w.get("anon_kb", 0)),
                             mb(w.get("spool_rss_kb", 0)))
                for w in r["memory"][phase]))
        row("2 workers %s: data.mdb mapping RSS / PSS per worker"
            % phase.replace("_", " "), lambda r: "; ".join(
                "%d kB / %d kB" % (w["snapshot_rss_kb"],
                                   w["snapshot_pss_kb"])
                for w in r["memory"][phase]))
    row("torrix-cp data.mdb mapping RSS / PSS after sweep",
        lambda r: "%d kB / %d kB" % (
            r["memory"]["cp_after_sweep"]["snapshot_rss_kb"],
            r["memory"]["cp_after_sweep"]["snapshot_pss_kb"]))
    row("2 workers: CPU ticks each in the wrk run", lambda r: " / ".join(
        str(t) for t in r["memory"]["worker_cpu_ticks_in_wrk"]))
    row("load average before / after", lambda r: "%.2f / %.2f" % (
        r["loadavg_before"], r["loadavg_after"]))
    row("ingest during wrk: runs/s (backlog at end, drain)",
        lambda r: "%.0f (%d, %.2f s)" % (
            r["ingest"]["runs_per_s"], r["ingest"]["backlog_at_end"],
            r["ingest"]["drain_s"]))
    row("ingest ceiling: backlog drained, runs/s (CPU us/run)",
        lambda r: "%.0f (%.1f)" % (r["ingest_drain"]["runs_per_s"],
                                   r["ingest_drain"]["cp_cpu_us_per_run"]))
    row("torrix-cp CPU us/run ingested",
        lambda r: "%.1f" % r["ingest"]["cp_cpu_us_per_run"])
    row("spool bytes per 1,000 runs (frames counted)",
        lambda r: "%.0f (%d frames, %d files)" % (
            r["spool"]["bytes_per_1000_runs"], r["spool"]["frames"],
            r["spool"]["files"]))
    if len(results) >= 2:
        a, b = results[0], results[-1]
        print()
        print("%s vs %s keys: req/s %.3fx, CPU/req %.3fx, unknown-key CPU/req"
              " %.3fx" % (format(b["keys"], ","), format(a["keys"], ","),
                          b["admission"]["rps"] / a["admission"]["rps"],
                          b["admission"]["cpu_us_per_req"]
                          / a["admission"]["cpu_us_per_req"],
                          b["unknown_key"]["cpu_us_per_req"]
                          / a["unknown_key"]["cpu_us_per_req"]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keys", default="10,1000000",
                    help="comma-separated key counts (default 10,1000000)")
    ap.add_argument("--duration", type=int, default=8,
                    help="seconds of the main wrk run (default 8)")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds of (a); the median is shown")
    ap.add_argument("--quick", action="store_true",
                    help="3 s runs, 1 round, 10 trials")
    ap.add_argument("--keep", action="store_true",
                    help="keep the data dirs under /tmp")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.trials, args.rounds = 3, 10, 1
    counts = [int(c) for c in args.keys.split(",")]

    out_dir = bench.REPO / "bench-out"
    out_dir.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="torrix-scale-"))
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / sub).mkdir()

    p_mock = torrix.free_port()
    mock = bench.Nginx(tmp, "mock", bench.nginx_conf(
        tmp, "mock", bench.mock_http(p_mock)))

    class Upstream:
        port = p_mock
        url = "http://127.0.0.1:%d" % p_mock

    sizes = []
    t_start = time.monotonic()
    try:
        mock.start(p_mock)
        for n in counts:
            sizes.append(Size(n, tmp, Upstream, args))
            sizes[-1].setup()
        # interleaved rounds: drift on a shared machine hits every size
        for rnd in range(args.rounds):
            for sz in sizes:
                sz.round(rnd)
        for sz in sizes:
            sz.summarize_rounds()
            sz.capacity()
        for sz in sizes:
            sz.finish()
    finally:
        for sz in sizes:
            sz.close()
        mock.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    results = [sz.res for sz in sizes]

    table(results)
    for r in results:
        for p in r.get("problems", []):
            print("problem (%s keys): %s" % (format(r["keys"], ","), p))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open(out_dir / "results.jsonl", "a") as f:
        for r in results:
            r["time"] = stamp
            f.write(json.dumps(r) + "\n")
    print("total %.0f s; results appended to %s"
          % (time.monotonic() - t_start, out_dir / "results.jsonl"))


if __name__ == "__main__":
    main()
