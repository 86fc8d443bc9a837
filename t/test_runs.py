"""Run records: one per request, listed newest first, ingested exactly
once even across a kill -9 of torrix-cp or of an nginx worker."""

import fcntl
import os
import signal
import struct
import time
from concurrent.futures import ThreadPoolExecutor

from torrix import spool_frames, wait_until


def send(stack, key, n, model="gpt-4o-mini"):
    """n sequential chat requests; returns their x-torrix-run-id, oldest
    first."""
    ids = []
    for _ in range(n):
        r = stack.chat(key, model)
        assert r.status_code == 200, r.text
        ids.append(r.headers["x-torrix-run-id"])
        time.sleep(0.002)       # distinct milliseconds: a total order
    return ids


def assert_exactly(stack, ids, settle=1.5):
    """GET /runs ends up holding exactly these run ids, and stays so."""
    runs = stack.wait_runs(len(ids), timeout=10)
    got = [r["id"] for r in runs]
    assert sorted(got) == sorted(ids), (len(got), len(ids))
    time.sleep(settle)          # one more spool rotation: no late duplicate
    got = [r["id"] for r in stack.runs()]
    assert len(got) == len(set(got)) == len(ids)
    assert set(got) == set(ids)
    return runs


def test_runs_listed_newest_first(stack):
    k = stack.api.create_key(allowed_models=["gpt-4o-mini"])
    ids = send(stack, k["key"], 5)
    assert len(set(ids)) == 5
    runs = stack.wait_runs(5)
    assert [r["id"] for r in runs] == ids[::-1]
    for r in runs:
        assert r["key_id"] == k["id"], r
        assert r["endpoint"] in ("chat.completions", "/v1/chat/completions")
        assert r["model_requested"] == "gpt-4o-mini", r
        assert r["status"] == 200, r
        lat = [v for f, v in r.items() if f.startswith("latency")]
        assert lat and all(isinstance(v, (int, float)) and v > 0
                           for v in lat), r
    one = stack.api.ok("GET", "/runs/" + ids[2])
    assert one["id"] == ids[2] and one["key_id"] == k["id"]
    r = stack.api.get("/runs/" + "0" * 32)
    assert r.status_code == 404, r.text


def test_runs_paging(stack):
    k = stack.api.create_key()
    ids = send(stack, k["key"], 5)
    stack.wait_runs(5)
    page = stack.api.ok("GET", "/runs?limit=2")
    assert len(page["data"]) == 2 and page["next_cursor"]
    all_runs = stack.api.list_all("/runs", limit=2)
    assert [r["id"] for r in all_runs] == ids[::-1]


def test_rejected_request_is_a_run(stack):
    k = stack.api.create_key(allowed_models=["gpt-4o"])
    r = stack.chat(k["key"], "gpt-3.5-turbo")
    assert r.status_code == 403
    runs = stack.wait_runs(1)
    assert len(runs) == 1
    run = runs[0]
    assert run["status"] == 403 and run["key_id"] == k["id"], run
    assert run["model_requested"] == "gpt-3.5-turbo", run
    assert r.headers.get("x-torrix-run-id") == run["id"], r.headers


def test_upstream_error_is_a_run(stack):
    k = stack.api.create_key()
    r = stack.chat(k["key"], headers={"x-mock-status": "503"})
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "mock_503"
    run = stack.wait_runs(1)[0]
    assert run["id"] == r.headers["x-torrix-run-id"]
    assert run["status"] == 503, run


def test_anthropic_run(stack):
    k = stack.api.create_key()
    r = stack.messages(k["key"])
    assert r.status_code == 200
    run = stack.wait_runs(1)[0]
    assert run["id"] == r.headers["x-torrix-run-id"]
    assert run["endpoint"] in ("messages", "/v1/messages"), run
    assert run["model_requested"] == "claude-3-5-haiku-latest"


def test_concurrent_requests(stack):
    k = stack.api.create_key()
    with ThreadPoolExecutor(8) as ex:
        rs = list(ex.map(lambda _: stack.chat(k["key"]), range(40)))
    assert all(r.status_code == 200 for r in rs), [r.status_code for r in rs]
    ids = [r.headers["x-torrix-run-id"] for r in rs]
    assert len(set(ids)) == 40
    assert_exactly(stack, ids, settle=0)


def test_exactly_once_across_cp_kill(stack):
    k = stack.api.create_key()
    ids = send(stack, k["key"], 20)
    stack.kill_cp()
    ids += send(stack, k["key"], 20)    # the gateway keeps serving
    stack.start_cp()
    assert_exactly(stack, ids)


def test_exactly_once_across_cp_kill_during_ingest(stack):
    k = stack.api.create_key()
    ids = send(stack, k["key"], 20)
    # let ingest start, then kill it in the middle
    wait_until(lambda: stack.runs(), 5, 0.01, "first runs")
    stack.kill_cp()
    ids += send(stack, k["key"], 20)
    stack.start_cp()
    ids += send(stack, k["key"], 5)
    assert_exactly(stack, ids)


def test_replayed_spool_file_is_detected(stack):
    """A spool file whose records are stored already (here: a copy of each
    file under a new name) adds no run: each record is counted as a
    duplicate, the newest run id among them too (torrix-cp appends runs
    past the last one without a search and falls back to the checked
    insert)."""
    k = stack.api.create_key()
    stack.stop_cp()
    ids = send(stack, k["key"], 12)
    spool = stack.data / "spool"
    wait_until(lambda: spool_frames(spool) == 12, 5, 0.05, "12 spooled runs")
    time.sleep(1.5)                     # sealed by the 1 s rotation
    files = sorted(spool.glob("*.txs"))
    assert files
    for i, f in enumerate(files):
        # later names, so they are read after the originals
        name = "%016x-99999.txs" % (int(f.name[:16], 16) + 1000 + i)
        (spool / name).write_bytes(f.read_bytes())
    assert spool_frames(spool) == 24
    stack.start_cp()
    assert_exactly(stack, ids)
    ingest = stack.api.ok("GET", "/health")["ingest"]
    assert ingest["ingested"] == 12, ingest
    assert ingest["duplicates"] == 12, ingest


def test_runs_survive_worker_kill(stack):
    k = stack.api.create_key()
    stack.stop_cp()                     # nothing ingests meanwhile
    ids = send(stack, k["key"], 10)
    # a run is spooled in the log phase, after the response went out
    wait_until(lambda: spool_frames(stack.data / "spool") == 10, 5, 0.01,
               "10 spooled runs")
    old = stack.workers()
    stack.allowed_log.append(r"exited on signal 9")
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: (lambda w: len(w) == 2 and not set(w) & set(old))(
        stack.workers()), 10, 0.02, "respawned workers")
    ids += send(stack, k["key"], 3)
    stack.start_cp()
    assert_exactly(stack, ids)


def test_spool_files_recycled(stack):
    """torrix-cp keeps a few finished spool files in spool/free/; workers
    take them instead of creating new ones (no fresh pages to zero), and
    every run is still ingested exactly once."""
    free = stack.data / "spool" / "free"
    k = stack.api.create_key()

    def free_files():
        return {f.stat().st_ino: f.name for f in free.glob("*.txs")}

    ids = send(stack, k["key"], 10)
    # the 1 s rotation seals the files; ingested, they go to free/
    wait_until(lambda: stack.runs() and len(stack.runs()) == 10
               and free_files(), 10, 0.05, "a finished file in free/")
    before = free_files()

    # more runs after the rotation: the workers take files from free/
    # (a file taken comes back to free/ under its new name when finished)
    def reused():
        now = {f.stat().st_ino: f.name
               for f in (stack.data / "spool").glob("*.txs")}
        now.update(free_files())
        return [i for i in before if i in now and now[i] != before[i]]

    deadline = time.time() + 15
    while not reused() and time.time() < deadline:
        ids += send(stack, k["key"], 5)
        time.sleep(0.3)
    assert reused(), (before, free_files())

    assert_exactly(stack, ids)
    assert len(free_files()) <= 4
    assert not list(free.glob(".claim-*"))


def spool_maps(stack):
    """pid -> the spool files each worker has mapped (path, deleted?)."""
    out = {}
    for pid in stack.workers():
        try:
            lines = open("/proc/%d/maps" % pid).read().splitlines()
        except FileNotFoundError:
            continue
        out[pid] = [(ln.split(None, 5)[5].replace(" (deleted)", ""),
                     ln.endswith("(deleted)"))
                    for ln in lines
                    if len(ln.split(None, 5)) == 6 and ".txs" in ln]
    return out


def test_spool_finished_files_stay_mapped_unlocked(stack):
    """A finished spool file stays mapped in its worker for a few seconds
    (taken back from free/, writing it costs no page faults) but not
    locked: torrix-cp can take the lock of any sealed file, and a file
    taken back is mapped once, not twice."""
    k = stack.api.create_key()
    free = stack.data / "spool" / "free"
    ids = send(stack, k["key"], 10)
    wait_until(lambda: list(free.glob("*.txs")), 10, 0.05,
               "a finished file in free/")
    kept = [path for maps in spool_maps(stack).values()
            for path, _ in maps if "/free/" in path]
    assert kept, spool_maps(stack)

    def lockable(path):
        with open(path, "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(f, fcntl.LOCK_UN)
            return True

    for f in free.glob("*.txs"):
        assert lockable(f), f

    # taken back and written again: every mapping is of a distinct file
    deadline = time.time() + 10
    while time.time() < deadline:
        ids += send(stack, k["key"], 5)
        time.sleep(0.3)
        for pid, maps in spool_maps(stack).items():
            inodes = [os.stat(p).st_ino for p, gone in maps
                      if not gone and os.path.exists(p)]
            assert len(inodes) == len(set(inodes)), (pid, maps)
            assert len(maps) <= 5, (pid, maps)
    assert_exactly(stack, ids)


def test_spool_free_files_expire(cp_stopped, tmp, monkeypatch):
    """A finished file waits in spool/free/ at most spool_free_age_s after
    its last record (it still holds its runs): an idle gateway keeps none."""
    import torrix
    wrapper = tmp / "torrix-cp-wrapper"
    wrapper.write_text('#!/bin/sh\nexec "%s" --spool-free-age-s 2 "$@"\n'
                       % torrix.CP_BIN)
    os.chmod(wrapper, 0o755)
    monkeypatch.setattr(torrix, "CP_BIN", wrapper)
    stack = cp_stopped.start_cp().start_nginx()
    free = stack.data / "spool" / "free"
    k = stack.api.create_key()
    ids = send(stack, k["key"], 10)
    # sealed by the 1 s rotation, ingested, retired into free/ ...
    wait_until(lambda: list(free.glob("*.txs")), 10, 0.05,
               "a finished file in free/")
    # ... and gone once it is 2 s past its last record
    wait_until(lambda: not list(free.glob("*.txs")), 10, 0.1,
               "free/ emptied")
    assert_exactly(stack, ids, settle=0)
    # nor do the workers keep deleted files mapped (their blocks held)
    wait_until(lambda: not any(gone for maps in spool_maps(stack).values()
                               for _, gone in maps), 10, 0.2,
               "mappings of deleted spool files dropped")


def test_workers_files_side_by_side(cp_stopped):
    """Spool files of two workers written side by side (their run ids
    interleave), one worker's next file behind its first, all there at
    once: each run is ingested exactly once, listed in id order, and found
    through the run index, with transactions of a few runs (ingest_batch 7)
    that take runs from several files."""
    from test_routes_api import (TX_RUN_COST, TX_RUN_ENDPOINT, TX_RUN_FLAGS,
                                 TX_RUN_ID, TX_RUN_KEY_ID, TX_RUN_MODEL,
                                 TX_RUN_PROVIDER, TX_RUN_START_US,
                                 TX_RUN_STATUS, TX_RUN_TOKENS_IN,
                                 TX_RUN_TOKENS_OUT, crc32c, rec_i64, rec_str,
                                 rec_u64)
    stack = cp_stopped.start_cp("--ingest-batch", "7")
    spool = stack.data / "spool"
    keys = ["key_side%016d" % i for i in range(2)]
    ms = int(time.time() * 1000) - 1000
    runs = []
    for i in range(150):
        rid = (ms + i // 3).to_bytes(6, "big") + os.urandom(10)
        runs.append((rid, keys[i % 2], (ms + i // 3) * 1000))

    def record(rid, key, start):
        return (rec_str(TX_RUN_ID, rid) + rec_i64(TX_RUN_START_US, start) +
                rec_str(TX_RUN_KEY_ID, key) + rec_u64(TX_RUN_ENDPOINT, 1) +
                rec_str(TX_RUN_MODEL, "gpt-4o-mini") +
                rec_str(TX_RUN_PROVIDER, "openai") +
                rec_u64(TX_RUN_STATUS, 200) +
                rec_u64(TX_RUN_TOKENS_IN, 10) +
                rec_u64(TX_RUN_TOKENS_OUT, 5) + rec_i64(TX_RUN_COST, 0) +
                rec_u64(TX_RUN_FLAGS, 0))

    def spool_file(created, pid, recs):
        body = b""
        for rec in recs:
            frame = struct.pack("<II", len(rec), crc32c(rec)) + rec
            body += frame + b"\0" * (-len(frame) % 8)
        body += struct.pack("<I", 0xffffffff) + b"\0" * 4
        hdr = b"TXSPOOL1" + struct.pack("<IIqQ", 1, pid, created,
                                        64 + len(body))
        name = "%016x-%d" % (created, pid)
        (spool / (name + ".tmp")).write_bytes(hdr + b"\0" * (64 - len(hdr))
                                              + body)
        return name

    # in each worker's files its runs are in time order, up to the order
    # within a millisecond; the first 100 runs alternate between workers
    # 70001 and 70002, the last 50 are worker 70001's next file
    t0 = ms * 1000
    recs = [record(*r) for r in runs]
    a1 = [x for j, x in enumerate(recs[:100]) if j % 2 == 0]
    b1 = [x for j, x in enumerate(recs[:100]) if j % 2 == 1]
    names = [spool_file(t0, 70001, a1), spool_file(t0 + 1, 70002, b1),
             spool_file(t0 + 2, 70001, recs[100:])]
    for name in names:
        os.rename(spool / (name + ".tmp"), spool / (name + ".txs"))

    ids = [r[0].hex() for r in runs]

    def ingested():
        h = stack.api.ok("GET", "/health")["ingest"]
        return h if h["files_done"] == 3 else None
    h, _ = wait_until(ingested, 10, 0.05, "the three files ingested")
    assert (h["ingested"], h["duplicates"], h["torn"]) == (150, 0, 0), h
    got = [r["id"] for r in stack.runs()]
    assert got == sorted(ids, reverse=True), "runs listed out of id order"
    for key in keys:
        want = sorted((r[0].hex() for r in runs if r[1] == key), reverse=True)
        assert [r["id"] for r in stack.runs(key_id=key)] == want, key
