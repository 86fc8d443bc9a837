"""Edge cases of the gateway as a client sees them: odd bodies, connection
reuse after refusals, methods and paths, headers, upstream trouble, and the
one-run-per-request invariant.

Raw HTTP/1.1 is written on sockets where the client library would hide what
is being tested (keep-alive after a refusal, pipelining, un-normalized
paths, Expect: 100-continue).  A small scripted upstream (EdgeUpstream)
stands in for the provider where the mock cannot misbehave (a 429 with
retry-after, a connection cut mid-response)."""

import json
import socket
import subprocess
import threading
import time

import pytest

from torrix import (UPSTREAM_ANTHROPIC_KEY, UPSTREAM_OPENAI_KEY,
                    assert_anthropic_error, assert_openai_error, free_port,
                    wait_until)

CHAT = "/v1/chat/completions"
MSG = {"role": "user", "content": "hi"}


# -- raw HTTP/1.1 on one socket ---------------------------------------------

class Resp:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers          # list of (lower name, value)
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k == name.lower():
                return v
        return None

    def all(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %r %r>" % (self.status, self.headers, self.body[:300])


class Conn:
    """One client connection; write raw requests, read whole responses."""

    def __init__(self, port, timeout=3.0):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError("connection closed by the server; buffered %r"
                           % self.buf[:200])
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exactly(self, n):
        while len(self.buf) < n:
            self._fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def read_head(self):
        line = self._line().decode("latin-1")
        proto, status, reason = (line.split(" ", 2) + [""])[:3]
        assert proto.startswith("HTTP/1."), line
        headers = []
        while True:
            h = self._line().decode("latin-1")
            if not h:
                break
            k, v = h.split(":", 1)
            headers.append((k.strip().lower(), v.strip()))
        return int(status), reason, headers

    def read(self, head=False, allow_interim=False):
        """The next final response (1xx skipped only if allow_interim)."""
        while True:
            status, reason, headers = self.read_head()
            if 100 <= status < 200 and allow_interim:
                continue
            break
        r = Resp(status, reason, headers, b"")
        if head or status in (204, 304) or 100 <= status < 200:
            return r
        te = (r.header("transfer-encoding") or "").lower()
        if "chunked" in te:
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exactly(size)
                assert self._exactly(2) == b"\r\n"
            r.body = body
        elif r.header("content-length") is not None:
            r.body = self._exactly(int(r.header("content-length")))
        else:                           # delimited by close
            try:
                while True:
                    self._fill()
            except EOFError:
                pass
            r.body, self.buf = self.buf, b""
        return r

    def closed_by_peer(self, wait=0.3):
        """True if the server closed the connection (EOF within wait)."""
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except socket.timeout:
            return False
        except OSError:
            return True
        finally:
            self.sock.settimeout(3.0)


def req_bytes(method, path, headers=(), body=b"", content_length=True):
    if isinstance(body, str):
        body = body.encode()
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1"]
    lines += ["%s: %s" % kv for kv in headers]
    if body and content_length:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chat_bytes(key, model="gpt-4o-mini", extra_headers=(), body=None):
    b = body if body is not None else json.dumps(
        {"model": model, "messages": [MSG]})
    h = [("Content-Type", "application/json")]
    if key:
        h.append(("Authorization", "Bearer " + key))
    return req_bytes("POST", CHAT, h + list(extra_headers), b)


def ready_key(stack, **fields):
    """A new key, polled until the gateway knows it (the snapshot is
    published within a second)."""
    k = stack.api.create_key(**fields)
    warm = stack.__dict__.setdefault("edge_warm_ids", [])

    def probe():
        r = stack.gw("GET", "/v1/models", k["key"])
        warm.append(r.headers.get("x-torrix-run-id"))
        return r.status_code != 401
    wait_until(probe, 2.0, 0.02, "key visible on the gateway")
    return k


def run_ids_equal(stack, ids, timeout=5.0):
    """Polls GET /runs until it holds exactly these run ids (and then
    checks a moment later that no extra run shows up)."""
    want = sorted(ids)

    def got():
        rs = stack.runs()
        have = sorted(r["id"] for r in rs)
        return rs if have == want else None
    try:
        runs = wait_until(got, timeout, 0.1, "runs == ids")[0]
    except AssertionError:
        have = [r["id"] for r in stack.runs()]
        missing = set(ids) - set(have)
        extra = [h for h in have if h not in ids]
        dup = len(have) - len(set(have))
        raise AssertionError("runs: %d expected, %d stored; missing %r, "
                             "extra %r, duplicated %d" %
                             (len(ids), len(have), missing, extra, dup))
    return {r["id"]: r for r in runs}


# -- a scripted upstream ------------------------------------------------------

class EdgeUpstream:
    """A provider that misbehaves on request: the `x-edge-mode` request
    header (nginx forwards it) picks the answer.  Every answer closes the
    connection."""

    CHAT_OK = json.dumps({
        "id": "chatcmpl-edge", "object": "chat.completion", "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "edge"}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1,
                  "total_tokens": 6}}).encode()

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.requests = []              # (request line, headers dict, body)
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def stop(self):
        self.stopping = True
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.5).close()
        except OSError:
            pass
        self.lsock.close()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        try:
            c.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                d = c.recv(65536)
                if not d:
                    return
                data += d
            head, body = data.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            hdrs = {}
            for ln in lines[1:]:
                k, v = ln.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
            n = int(hdrs.get("content-length", "0"))
            while len(body) < n:
                d = c.recv(65536)
                if not d:
                    break
                body += d
            with self.lock:
                self.requests.append((lines[0], hdrs, body))
            self._answer(c, hdrs.get("x-edge-mode", ""))
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def _answer(self, c, mode):
        if mode == "429":
            body = json.dumps({"error": {
                "message": "Rate limit reached for gpt-4o-mini",
                "type": "requests", "param": None,
                "code": "rate_limit_exceeded"}}).encode()
            c.sendall(b"HTTP/1.1 429 Too Many Requests\r\n"
                      b"Content-Type: application/json\r\n"
                      b"retry-after: 17\r\n"
                      b"x-ratelimit-remaining-requests: 0\r\n"
                      b"x-ratelimit-reset-requests: 17s\r\n"
                      b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                      % len(body) + body)
        elif mode == "cut":
            # promises 4000 bytes, sends the start of the JSON, goes away
            c.sendall(b"HTTP/1.1 200 OK\r\n"
                      b"Content-Type: application/json\r\n"
                      b"Content-Length: 4000\r\nConnection: close\r\n\r\n"
                      + self.CHAT_OK[:40])
            time.sleep(0.05)
            c.shutdown(socket.SHUT_RDWR)
        elif mode == "cut-sse":
            frame = (b'data: {"id":"c","object":"chat.completion.chunk",'
                     b'"created":1,"model":"gpt-4o-mini","choices":[{'
                     b'"index":0,"delta":{"content":"hello there"},'
                     b'"finish_reason":null}]}\n\n')
            c.sendall(b"HTTP/1.1 200 OK\r\n"
                      b"Content-Type: text/event-stream\r\n"
                      b"Transfer-Encoding: chunked\r\n"
                      b"Connection: close\r\n\r\n"
                      + b"%x\r\n%s\r\n" % (len(frame), frame))
            time.sleep(0.05)
            c.shutdown(socket.SHUT_RDWR)
        elif mode == "nothing":
            c.shutdown(socket.SHUT_RDWR)
        else:
            body = self.CHAT_OK
            c.sendall(b"HTTP/1.1 200 OK\r\n"
                      b"Content-Type: application/json\r\n"
                      b"x-request-id: req_edge_123\r\n"
                      b"openai-processing-ms: 42\r\n"
                      b"x-upstream-custom: kept\r\n"
                      b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                      % len(body) + body)


@pytest.fixture
def edge(stack):
    """The OpenAI provider pointed at an EdgeUpstream; returns (upstream,
    key)."""
    e = EdgeUpstream()
    k = stack.api.create_key()
    stack.api.ok("PUT", "/providers/openai",
                 {"base_url": e.url + "/v1", "api_key": UPSTREAM_OPENAI_KEY})
    wait_until(lambda: stack.chat(k["key"]).status_code == 200 and
               e.requests, 2.0, 0.02, "requests on the edge upstream")
    yield e, k
    e.stop()


# -- bodies -------------------------------------------------------------------

def big_body(model, size=60 * 1024, model_last=True):
    """A valid chat body of about `size` bytes; the model key at the end so
    it lies in the part nginx wrote to the temp file last."""
    filler = "x" * (size - 200)
    msgs = [{"role": "user", "content": filler}]
    if model_last:
        s = json.dumps({"messages": msgs, "model": model})
    else:
        s = json.dumps({"model": model, "messages": msgs})
    return s.encode()


def test_large_body_in_temp_file_allowlist_and_identical(stack):
    k = ready_key(stack, allowed_models=["gpt-4o-mini"])
    body = big_body("gpt-4o-mini")
    assert 58000 < len(body) < 64 * 1024
    r = stack.gw("POST", CHAT, k["key"], body)
    assert r.status_code == 200, r.text
    assert r.headers.get("x-torrix-run-id")
    ups = stack.mock.requests
    assert len(ups) == 1
    assert ups[0].body == body, "upstream body differs (len %d vs %d)" % (
        len(ups[0].body), len(body))
    # the body really went through a temp file (nginx logs that at warn)
    assert "buffered to a temporary file" in stack.error_log()

    # the model at the end of a spilled body is still checked
    r = stack.gw("POST", CHAT, k["key"], big_body("gpt-4o"))
    e = assert_openai_error(r, 403)
    assert "gpt-4o" in e["message"]
    assert len(stack.mock.requests) == 1


def test_body_just_over_limit_413(stack):
    k = ready_key(stack)
    body = big_body("gpt-4o-mini", 64 * 1024 + 1)
    body = body + b" " * (64 * 1024 + 1 - len(body))
    assert len(body) == 64 * 1024 + 1
    assert_openai_error(stack.gw("POST", CHAT, k["key"], body), 413)
    exact = big_body("gpt-4o-mini", 64 * 1024)
    exact = exact + b" " * (64 * 1024 - len(exact))
    assert len(exact) == 64 * 1024
    r = stack.gw("POST", CHAT, k["key"], exact)
    assert r.status_code == 200, r.text
    assert stack.mock.requests[-1].body == exact


def test_chunked_body_under_limit(stack):
    k = ready_key(stack, allowed_models=["gpt-4o-mini"])
    body = big_body("gpt-4o-mini", 30 * 1024)

    def gen():
        for i in range(0, len(body), 4000):
            yield body[i:i + 4000]
    r = stack.gw("POST", CHAT, k["key"], gen())
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert r.status_code == 200, r.text
    assert stack.mock.requests[-1].body == body
    # and a disallowed model in a chunked body is refused
    bad = big_body("gpt-4o", 30 * 1024)
    r = stack.gw("POST", CHAT, k["key"], (bad[i:i + 999]
                                          for i in range(0, len(bad), 999)))
    assert_openai_error(r, 403)
    assert len(stack.mock.requests) == 1


def snapshot_readers(stack):
    """The snapshot's reader table (mdb_stat -r): {pid: txnid or "-"}."""
    r = subprocess.run(["mdb_stat", "-r", str(stack.data / "snapshot")],
                       capture_output=True, text=True)
    # (mdb_stat exits 1 after listing readers: the listing is what counts)
    assert "Reader Table Status" in r.stdout, (r.stdout, r.stderr)
    out = r.stdout
    readers = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and f[0].isdigit():
            readers[int(f[0])] = f[2]
    return readers


def test_no_read_txn_held_while_body_arrives(stack):
    """The key is checked on the headers; while the body is still on its
    way no worker holds a snapshot read txn (it would pin the snapshot's
    pages and let the file grow), and the request then completes."""
    k = ready_key(stack, allowed_models=["gpt-4o-mini"])
    body = json.dumps({"model": "gpt-4o-mini", "messages": [MSG]}).encode()
    with Conn(stack.port) as c:
        c.send(req_bytes("POST", CHAT, [
            ("Authorization", "Bearer " + k["key"]),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body)))], content_length=False)
            + body[:10])
        time.sleep(0.5)
        workers = set(stack.workers())
        readers = snapshot_readers(stack)
        # a worker has its reader slot (opened at its first request), and
        # no worker has a txn open in it
        assert workers & set(readers), (workers, readers)
        held = {p: t for p, t in readers.items()
                if p in workers and t != "-"}
        assert held == {}, readers
        c.send(body[10:])
        r = c.read()
        assert r.status == 200, r
    assert stack.mock.requests[-1].body == body


def test_expect_100_continue(stack):
    k = ready_key(stack)
    body = json.dumps({"model": "gpt-4o-mini", "messages": [MSG]}).encode()
    with Conn(stack.port) as c:
        c.send(req_bytes("POST", CHAT, [
            ("Authorization", "Bearer " + k["key"]),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Expect", "100-continue")], content_length=False))
        first = c.read_head()
        assert first[0] == 100, first
        c.send(body)
        r = c.read()
        assert r.status == 200, r
        assert r.header("x-torrix-run-id")
        # the same socket goes on
        c.send(chat_bytes(k["key"]))
        assert c.read().status == 200
    assert stack.mock.requests[0].body == body

    # over the limit: 413 (with or without a 100 first); the body is
    # discarded if the client sends it and the connection keeps working
    big = b"{" + b" " * (70 * 1024) + b"}"
    with Conn(stack.port) as c:
        c.send(req_bytes("POST", CHAT, [
            ("Authorization", "Bearer " + k["key"]),
            ("Content-Length", str(len(big))),
            ("Expect", "100-continue")], content_length=False))
        st, reason, hdrs = c.read_head()
        saw100 = st == 100
        if saw100:
            # nginx says 100 before the access phase refuses: the client
            # sends the body, which nginx must discard
            c.send(big)
            st, reason, hdrs = c.read_head()
        c._exactly(int(dict(hdrs)["content-length"]))
        assert st == 413, (st, hdrs)
        assert dict(hdrs).get("x-torrix-run-id")
        if not saw100:
            c.send(big)     # the client sends it anyway (after a timeout)
        c.send(chat_bytes(k["key"]))
        assert c.read().status == 200
    assert len(stack.mock.requests) == 3


def test_expect_100_continue_not_sent_before_refusal(stack):
    k = ready_key(stack)
    cases = [
        ("401", [("Content-Length", "5000")], 401),
        ("413", [("Authorization", "Bearer " + k["key"]),
                 ("Content-Length", str(200 * 1024))], 413),
    ]
    got = []
    for what, hdrs, status in cases:
        with Conn(stack.port) as c:
            c.send(req_bytes("POST", CHAT, hdrs + [
                ("Expect", "100-continue")], content_length=False))
            got.append((what, c.read_head()[0]))
    assert got == [(w, st) for w, _, st in cases], got


@pytest.mark.parametrize("body", [b"", None])
def test_empty_post_400_json(stack, body):
    k = ready_key(stack)
    with Conn(stack.port) as c:
        h = [("Authorization", "Bearer " + k["key"]),
             ("Content-Type", "application/json")]
        if body is not None:
            h.append(("Content-Length", "0"))
        c.send(req_bytes("POST", CHAT, h))
        r = c.read()
        assert r.status == 400, r
        assert "json" in r.header("content-type")
        e = r.json()["error"]
        assert e["type"] and e["message"] and "code" in e, r
        assert r.header("x-torrix-run-id")
        c.send(chat_bytes(k["key"]))
        assert c.read().status == 200
    assert len(stack.mock.requests) == 1


def test_utf8_bom_body(stack):
    """A BOM before the JSON: either refused as invalid JSON (400), or
    accepted with the allowlist applied to the model inside; never a 5xx
    and never a way around the allowlist."""
    k = ready_key(stack, allowed_models=["gpt-4o-mini"])
    bom = b"\xef\xbb\xbf"
    ok = bom + json.dumps({"model": "gpt-4o-mini",
                           "messages": [MSG]}).encode()
    bad = bom + json.dumps({"model": "gpt-4o", "messages": [MSG]}).encode()
    r1 = stack.gw("POST", CHAT, k["key"], ok)
    r2 = stack.gw("POST", CHAT, k["key"], bad)
    assert r1.status_code in (200, 400), r1.text
    if r1.status_code == 400:
        assert_openai_error(r1, 400)
    else:
        assert stack.mock.requests[-1].body == ok
    assert r2.status_code in (400, 403), r2.text
    assert_openai_error(r2, r2.status_code)
    assert len(stack.mock.requests) == (1 if r1.status_code == 200 else 0)


def test_model_unicode_escape_decoded(stack):
    k = ready_key(stack, allowed_models=["gpt-4o-mini"])
    esc = '{"model":"gpt\\u002d4o-mini","messages":[{"role":"user",' \
          '"content":"hi"}]}'
    r = stack.gw("POST", CHAT, k["key"], esc)
    assert r.status_code == 200, r.text
    assert stack.mock.requests[-1].json()["model"] == "gpt-4o-mini"
    run = stack.run(r.headers["x-torrix-run-id"])
    assert run["model_requested"] == "gpt-4o-mini", run

    # an escaped name that decodes to a model outside the allowlist
    for model in ('gpt\\u002d4o', 'gpt-4o\\u002dmini\\u0000',
                  'gpt-4o-min\\u0069x', 'GPT-4O-MINI'):
        b = '{"model":"%s","messages":[]}' % model
        r = stack.gw("POST", CHAT, k["key"], b)
        assert r.status_code in (400, 403), (model, r.status_code, r.text)
        assert_openai_error(r, r.status_code)
    # an escaped "model" key is the model too
    b = '{"mod\\u0065l":"gpt-4o","messages":[]}'
    assert_openai_error(stack.gw("POST", CHAT, k["key"], b), 403)
    assert len(stack.mock.requests) == 1


def test_duplicate_model_keys_last_wins(stack):
    """The upstream's parser (Python, Go, JS: last duplicate wins) must see
    the model the allowlist saw."""
    k = ready_key(stack, allowed_models=["gpt-4o-mini"])
    smuggle = '{"model":"gpt-4o-mini","messages":[],"model":"gpt-4o"}'
    r = stack.gw("POST", CHAT, k["key"], smuggle)
    assert r.status_code in (400, 403), r.text
    assert_openai_error(r, r.status_code)
    smuggle2 = '{"model":"gpt-4o-mini","messages":[],"mod\\u0065l":"o1"}'
    r = stack.gw("POST", CHAT, k["key"], smuggle2)
    assert r.status_code in (400, 403), r.text
    assert stack.mock.requests == []
    # the other order: the last one is allowed; if it passes, the run and
    # the upstream agree on it
    fine = '{"model":"gpt-4o","messages":[],"model":"gpt-4o-mini"}'
    r = stack.gw("POST", CHAT, k["key"], fine)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert json.loads(stack.mock.requests[-1].body)["model"] == \
            "gpt-4o-mini"
        run = stack.run(r.headers["x-torrix-run-id"])
        assert run["model_requested"] == "gpt-4o-mini", run


def test_nested_model_does_not_count(stack):
    k = ready_key(stack, allowed_models=["gpt-4o-mini"])
    b = {"messages": [{"role": "user", "content": "hi", "model": "gpt-4o"}],
         "metadata": {"model": "o1"}, "model": "gpt-4o-mini"}
    r = stack.gw("POST", CHAT, k["key"], b)
    assert r.status_code == 200, r.text
    assert stack.mock.requests[-1].json() == b
    # a nested allowed model does not make a disallowed top-level one pass
    b = {"messages": [{"role": "user", "content": "hi",
                       "model": "gpt-4o-mini"}], "model": "gpt-4o"}
    assert_openai_error(stack.gw("POST", CHAT, k["key"], b), 403)
    # only nested: no model at all
    b = {"messages": [{"role": "user", "content": "hi",
                       "model": "gpt-4o-mini"}],
         "tools": [{"model": "gpt-4o-mini"}]}
    e = assert_openai_error(stack.gw("POST", CHAT, k["key"], b), 400)
    assert "model" in e["message"]
    assert len(stack.mock.requests) == 1


def test_error_body_valid_utf8_for_invalid_utf8_model(stack):
    k = ready_key(stack, allowed_models=["gpt-4o-mini"])
    r = stack.gw("POST", CHAT, k["key"],
                 b'{"model":"gpt\xff\xfe","messages":[]}')
    assert r.status_code in (400, 403), r.text
    json.loads(r.content)               # bytes: must be UTF-8 JSON


def test_error_body_escapes_model(stack):
    k = ready_key(stack, allowed_models=["gpt-4o-mini"])
    # the JSON text of a model name, and the name a JSON parser decodes
    for model in (r'a\"b\\c', r"x\ny", r"x\u0001y", "%s%n", r"<\/x>"):
        shown = json.loads('"%s"' % model)
        b = '{"model":"%s","messages":[]}' % model
        r = stack.gw("POST", CHAT, k["key"], b)
        e = assert_openai_error(r, 403)
        assert shown in e["message"], (model, e)
    assert stack.mock.requests == []


def test_long_model_name_400(stack):
    k = ready_key(stack)
    r = stack.chat(k["key"], "m" * 300)
    e = assert_openai_error(r, 400)
    assert "model" in e["message"].lower() and "256" in e["message"], e
    # the bound itself: 256 bytes is a model name, 257 is not
    assert stack.chat(k["key"], "m" * 256).status_code == 200
    assert_openai_error(stack.chat(k["key"], "m" * 257), 400)
    # an empty model is refused the same way
    assert_openai_error(stack.chat(k["key"], ""), 400)
    assert [len(q.json()["model"]) for q in stack.mock.requests] == [256]


# -- connection hygiene --------------------------------------------------------

def test_keepalive_after_refusals(stack):
    k = ready_key(stack, allowed_models=["gpt-4o-mini"])
    ro = ready_key(stack, access="read")
    over = b'{"model":"gpt-4o-mini","messages":[],"pad":"' + \
        b"p" * (70 * 1024) + b'"}'
    refusals = [
        ("401 no key", chat_bytes(None), 401),
        ("401 bad key", chat_bytes("sk-torrix-" + "Q" * 43), 401),
        ("403 model", chat_bytes(k["key"], "gpt-4o"), 403),
        ("403 read key", chat_bytes(ro["key"]), 403),
        ("413 body sent", req_bytes("POST", CHAT, [
            ("Authorization", "Bearer " + k["key"])], over), 413),
        ("400 json", chat_bytes(k["key"], body="{not json"), 400),
        ("404 path", req_bytes("POST", "/v1/nope", [
            ("Authorization", "Bearer " + k["key"])], b"{}"), 404),
        ("405 GET", req_bytes("GET", CHAT, [
            ("Authorization", "Bearer " + k["key"])]), 405),
    ]
    for what, raw, status in refusals:
        with Conn(stack.port) as c:
            c.send(raw)
            r = c.read()
            assert r.status == status, (what, r)
            assert r.header("x-torrix-run-id"), (what, r)
            assert (r.header("connection") or "").lower() != "close", \
                (what, r)
            c.send(chat_bytes(k["key"]))
            r2 = c.read()
            assert r2.status == 200, (what, r2)
            c.send(chat_bytes(k["key"]))
            assert c.read().status == 200, what
    assert len(stack.mock.requests) == 2 * len(refusals)


def test_keepalive_413_body_in_flight(stack):
    """413 on Content-Length, the body sent in pieces after the answer has
    started: it is discarded and the next request on the socket works."""
    k = ready_key(stack)
    over = b'{"model":"gpt-4o-mini","pad":"' + b"p" * (200 * 1024) + b'"}'
    with Conn(stack.port) as c:
        head = req_bytes("POST", CHAT, [
            ("Authorization", "Bearer " + k["key"]),
            ("Content-Length", str(len(over)))], content_length=False)
        c.send(head + over[:1000])
        r = c.read()
        assert r.status == 413, r
        for i in range(1000, len(over), 16384):
            c.send(over[i:i + 16384])
        c.send(chat_bytes(k["key"]))
        assert c.read().status == 200
    assert len(stack.mock.requests) == 1


def test_pipelined_requests(stack):
    k = ready_key(stack)
    with Conn(stack.port) as c:
        c.send(chat_bytes(k["key"]) + chat_bytes(None) +
               chat_bytes(k["key"], "gpt-4o") +
               req_bytes("GET", "/v1/models", [
                   ("Authorization", "Bearer " + k["key"])]))
        rs = [c.read() for _ in range(4)]
    assert [r.status for r in rs] == [200, 401, 200, 200], rs
    ids = [r.header("x-torrix-run-id") for r in rs]
    assert all(ids) and len(set(ids)) == 4, ids
    assert rs[0].json()["object"] == "chat.completion"
    assert rs[3].json()["object"] == "list"
    assert [q.json()["model"] for q in stack.mock.requests] == \
        ["gpt-4o-mini", "gpt-4o"]


# -- methods and paths --------------------------------------------------------

def test_head_get_options_on_chat_405(stack):
    k = ready_key(stack)
    for m in ("GET", "PUT", "DELETE", "OPTIONS"):
        r = stack.gw(m, CHAT, k["key"])
        e = assert_openai_error(r, 405)
        assert m in e["message"] and "POST" in e["message"], e
        assert r.headers.get("x-torrix-run-id")
    with Conn(stack.port) as c:
        c.send(req_bytes("HEAD", CHAT, [
            ("Authorization", "Bearer " + k["key"])]))
        r = c.read(head=True)
        assert r.status == 405, r
        assert r.header("x-torrix-run-id")
        assert "json" in (r.header("content-type") or "")
        # no body follows a HEAD answer: the next request parses cleanly
        c.send(chat_bytes(k["key"]))
        assert c.read().status == 200
    # POST on /v1/models is refused the same way
    assert_openai_error(stack.gw("POST", "/v1/models", k["key"], {}), 405)
    assert len(stack.mock.requests) == 1


def test_models_read_only_key_403(stack):
    ro = stack.api.create_key(access="read")
    k = ready_key(stack, allowed_models=["gpt-4o-mini"])
    r = stack.gw("GET", "/v1/models", ro["key"])
    e = assert_openai_error(r, 403)
    assert "read" in e["message"].lower()
    assert r.headers.get("x-torrix-run-id")
    r = stack.gw("GET", "/v1/models", k["key"])
    assert r.status_code == 200
    assert [m["id"] for m in r.json()["data"]] == ["gpt-4o-mini"]
    assert stack.mock.requests == []


@pytest.mark.parametrize("path", ["/v1/foo/bar", "/v1/chat/completion",
                                  "/v1/chat/completions/", "/v1/",
                                  "/v1/messagesx"])
def test_unknown_path_404_json(stack, path):
    k = ready_key(stack)
    r = stack.gw("POST", path, k["key"], {"model": "gpt-4o-mini"})
    e = assert_openai_error(r, 404)
    assert r.headers.get("x-torrix-run-id")
    assert stack.mock.requests == []
    r = stack.gw("POST", path, None, {"model": "gpt-4o-mini"},
                 headers={"anthropic-version": "2023-06-01"})
    assert_anthropic_error(r, 404)
    assert e


@pytest.mark.parametrize("path", [
    "/v1/../v1/chat/completions",
    "/v1/./chat/completions",
    "/v1//chat/completions",
    "/v1/%2e%2e/v1/chat/completions",
    "/v1/chat/%2e/completions",
    "/v1/chat%2Fcompletions",
    "/v1/x/../chat/completions",
    "/v1/chat/completions?x=1",
    "/api/../v1/chat/completions",
    "/v1/chat/completions%00",
    "/v1/chat/completions;.json",
])
def test_odd_paths_never_bypass_the_key(stack, path):
    k = ready_key(stack)
    outcomes = []
    with Conn(stack.port) as c:
        for key in (None, "sk-torrix-" + "Q" * 43, k["key"]):
            c.send(chat_bytes(None, extra_headers=[
                ("Authorization", "Bearer " + key)] if key else [])
                .replace(b"POST " + CHAT.encode(), b"POST " + path.encode(),
                         1))
            r = c.read()
            outcomes.append(r.status)
            if key != k["key"]:
                assert r.status in (400, 401, 404), (path, key, r)
                assert stack.mock.requests == [], (path, key)
            if r.status != 400 and (r.header("connection") or "") != "close":
                assert r.header("x-torrix-run-id"), (path, r)
            if r.status == 400 and (r.header("connection") or "") == "close":
                break
    # with the valid key: whatever reached the mock went to the right path
    for q in stack.mock.requests:
        assert q.path.split("?")[0] == CHAT, (path, q.path)
        assert q.header("Authorization") == "Bearer " + UPSTREAM_OPENAI_KEY


# -- headers ------------------------------------------------------------------

def test_key_in_query_string_not_accepted(stack):
    k = ready_key(stack)
    for q in ("?key=%s", "?api_key=%s", "?access_token=%s"):
        r = stack.gw("POST", CHAT + q % k["key"], None,
                     {"model": "gpt-4o-mini", "messages": [MSG]})
        assert assert_openai_error(r, 400)["code"] == "key_in_url"
    r = stack.gw("GET", "/v1/models?key=" + k["key"])
    assert_openai_error(r, 400)
    # with a valid header too, the key in the URL is still refused: it
    # would otherwise reach the provider in the request line
    r = stack.gw("POST", CHAT + "?key=" + k["key"], k["key"],
                 {"model": "gpt-4o-mini", "messages": [MSG]})
    assert_openai_error(r, 400)
    assert stack.mock.requests == []


def test_authorization_and_x_api_key_conflict(stack):
    k = ready_key(stack)
    bad = "sk-torrix-" + "Q" * 43
    # Authorization wins: a valid Bearer with a bad x-api-key passes
    r = stack.chat(k["key"], headers={"x-api-key": bad})
    assert r.status_code == 200, r.text
    up = stack.mock.requests[-1]
    assert "sk-torrix" not in up.raw()
    assert up.header("x-api-key") is None
    # and a bad Bearer is not rescued by a valid x-api-key
    r = stack.chat(None, headers={"Authorization": "Bearer " + bad,
                                  "x-api-key": k["key"]})
    assert_openai_error(r, 401)
    # Anthropic: the same precedence, upstream gets only the provider key
    r = stack.messages(bad, headers={"Authorization": "Bearer " + k["key"]})
    assert r.status_code == 200, r.text
    up = stack.mock.requests[-1]
    assert up.header("x-api-key") == UPSTREAM_ANTHROPIC_KEY
    assert up.header("Authorization") is None
    assert "sk-torrix" not in up.raw()
    assert len(stack.mock.requests) == 2


@pytest.mark.parametrize("auth", ["bearer %s", "BEARER %s", "Bearer  %s",
                                  "bEaReR %s"])
def test_bearer_scheme_case_insensitive(stack, auth):
    k = ready_key(stack)
    r = stack.chat(None, headers={"Authorization": auth % k["key"]})
    assert r.status_code == 200, (auth, r.text)


def test_malformed_authorization(stack):
    k = ready_key(stack)
    for auth in ("Bearer", "Bearer ", "Bearer" + k["key"],
                 "Bearer %s extra" % k["key"], "Token " + k["key"],
                 "Bearer " + k["key"][:-1], "Bearer " + k["key"] + "A"):
        r = stack.chat(None, headers={"Authorization": auth})
        assert_openai_error(r, 401)
    assert stack.mock.requests == []


def test_very_long_authorization_header(stack):
    k = ready_key(stack)
    for n in (300, 6000):
        r = stack.chat(None, headers={"Authorization": "Bearer " + "A" * n})
        assert_openai_error(r, 401)
        r = stack.chat(None, headers={"Authorization": "Bearer sk-torrix-" +
                                      "A" * n})
        assert_openai_error(r, 401)
    # beyond nginx's header buffers (8k): nginx's own 400, never a pass
    r = stack.chat(None, headers={"Authorization": "Bearer " + "A" * 9000})
    assert r.status_code in (400, 401, 431), r.status_code
    assert stack.chat(k["key"]).status_code == 200
    assert len(stack.mock.requests) == 1


@pytest.fixture
def proxy_key(stack):
    stack.api.ok("PATCH", "/settings", {"proxy_targets": [stack.mock.url]})
    k = stack.api.create_key()
    wait_until(lambda: stack.gw(
        "POST", "/proxy", k["key"], {"a": 1},
        headers={"x-target-url": stack.mock.url + "/warm"}).status_code ==
        200, 2.0, 0.02, "proxy target allowed")
    stack.mock.clear()
    return k


def test_x_target_url_bad_characters_refused(stack, proxy_key):
    base = stack.mock.url
    for target in (base + "/a b", base + "/a\tb",
                   base + "/x\x7f", base + "/%2e%2e/admin", base + "/a%2fb",
                   base + "/a\\b"):
        r = stack.gw("POST", "/proxy", proxy_key["key"], {"a": 1},
                     headers={"x-target-url": target})
        assert r.status_code in (400, 403), (target, r.status_code, r.text)
    # a bare CR inside the header value: the request itself is malformed
    with Conn(stack.port) as c:
        c.send(req_bytes("POST", "/proxy", [
            ("Authorization", "Bearer " + proxy_key["key"]),
            ("x-target-url", base + "/x\rInjected: 1")], b"{}"))
        try:
            r = c.read()
            assert r.status in (400, 403), r
        except EOFError:
            pass
    assert stack.mock.requests == []
    # a bare LF ends the header line for nginx (as for most servers): the
    # target is ".../x" and "Injected" is one more client header; the
    # target the allowlist checked is the one requested
    with Conn(stack.port) as c:
        c.send(req_bytes("POST", "/proxy", [
            ("Authorization", "Bearer " + proxy_key["key"]),
            ("x-target-url", base + "/x\nInjected: 1")], b"{}"))
        r = c.read()
        assert r.status in (200, 400, 403), r
    if r.status == 200:
        assert [q.path for q in stack.mock.requests] == ["/x"]
        stack.mock.clear()
    # encoded CR LF: refused, or forwarded still encoded (no header split)
    r = stack.gw("POST", "/proxy", proxy_key["key"], {"a": 1},
                 headers={"x-target-url": base + "/x%0d%0aInjected:%201"})
    if r.status_code == 200:
        q = stack.mock.requests[-1]
        assert q.header("Injected") is None
        assert q.path == "/x%0d%0aInjected:%201", q.path
    else:
        assert r.status_code in (400, 403), r.text
        assert stack.mock.requests == []


def test_x_upstream_authorization_only_on_proxy(stack, proxy_key):
    h = {"x-upstream-authorization": "Bearer sk-upstream-evil"}
    r = stack.chat(proxy_key["key"], headers=h)
    assert r.status_code == 200, r.text
    up = stack.mock.requests[-1]
    assert up.header("Authorization") == "Bearer " + UPSTREAM_OPENAI_KEY
    assert up.header("x-upstream-authorization") is None
    assert "sk-upstream-evil" not in up.raw()
    r = stack.messages(proxy_key["key"], headers=h)
    assert r.status_code == 200, r.text
    up = stack.mock.requests[-1]
    assert up.header("x-api-key") == UPSTREAM_ANTHROPIC_KEY
    assert "sk-upstream-evil" not in up.raw()
    # on /proxy it becomes the upstream Authorization
    r = stack.gw("POST", "/proxy", proxy_key["key"], {"a": 1},
                 headers=dict(h, **{"x-target-url": stack.mock.url + "/p"}))
    assert r.status_code == 200, r.text
    up = stack.mock.requests[-1]
    assert up.header("Authorization") == "Bearer sk-upstream-evil"
    assert up.header("x-upstream-authorization") is None
    assert "sk-torrix" not in up.raw()


def test_client_torrix_and_cookie_headers_stripped(stack):
    k = ready_key(stack)
    sent = {"x-torrix-name": "n", "x-torrix-user": "u",
            "x-torrix-tags": "a=b", "x-torrix-sample": "1",
            "x-torrix-agent": "ag", "Cookie": "session=s3cr3t"}
    r = stack.chat(k["key"], headers=sent)
    assert r.status_code == 200, r.text
    up = stack.mock.requests[-1]
    for h in sent:
        assert up.header(h) is None, (h, up.headers)
    assert "s3cr3t" not in up.raw()


def test_other_client_torrix_headers_stripped(stack):
    k = ready_key(stack)
    sent = {"x-torrix-run-id": "0" * 32, "x-torrix-limit-scope": "spoof",
            "x-torrix-debug": "1", "X-Torrix-Secret": "s3cr3t"}
    r = stack.chat(k["key"], headers=sent)
    assert r.status_code == 200, r.text
    up = stack.mock.requests[-1]
    leaked = [h for h in sent if up.header(h) is not None]
    assert leaked == [], leaked


def test_upstream_response_headers_pass_through(stack, edge):
    e, k = edge
    r = stack.chat(k["key"])
    assert r.status_code == 200, r.text
    assert r.headers.get("x-request-id") == "req_edge_123"
    assert r.headers.get("openai-processing-ms") == "42"
    assert r.headers.get("x-upstream-custom") == "kept"
    assert r.headers.get("x-torrix-run-id")
    assert r.content == EdgeUpstream.CHAT_OK


# -- upstream trouble -------------------------------------------------------

def test_upstream_429_retry_after_passes_through(stack, edge):
    e, k = edge
    with Conn(stack.port) as c:
        c.send(chat_bytes(k["key"], extra_headers=[("x-edge-mode", "429")]))
        r = c.read()
    assert r.status == 429, r
    assert r.all("retry-after") == ["17"], r.headers
    assert r.header("x-ratelimit-remaining-requests") == "0"
    assert r.header("x-ratelimit-reset-requests") == "17s"
    assert r.header("x-torrix-limit-scope") is None
    assert r.json()["error"]["code"] == "rate_limit_exceeded", r
    rid = r.header("x-torrix-run-id")
    run = stack.run(rid)
    assert run["status"] == 429 and run.get("upstream_status") == 429, run


def test_upstream_closes_mid_response(stack, edge):
    e, k = edge
    with Conn(stack.port) as c:
        c.send(chat_bytes(k["key"], extra_headers=[("x-edge-mode", "cut")]))
        st, _, hdrs = c.read_head()
        h = dict(hdrs)
        assert st == 200 and h.get("x-torrix-run-id"), (st, hdrs)
        # the client must not take the truncated body for a whole one
        assert h.get("content-length") == "4000", hdrs
        deadline = time.monotonic() + 2
        while not c.closed_by_peer(0.1):
            assert time.monotonic() < deadline, "connection left open"
        assert len(c.buf) < 4000
    run = stack.run(h["x-torrix-run-id"])
    assert run["flags"].get("error") or run["flags"].get("cancelled") or \
        run.get("error"), run
    # the gateway keeps serving
    assert stack.chat(k["key"]).status_code == 200


def test_upstream_closes_mid_stream(stack, edge):
    e, k = edge
    with Conn(stack.port) as c:
        c.send(chat_bytes(k["key"], extra_headers=[("x-edge-mode",
                                                     "cut-sse")],
                          body=json.dumps({"model": "gpt-4o-mini",
                                           "stream": True,
                                           "messages": [MSG]})))
        st, _, hdrs = c.read_head()
        h = dict(hdrs)
        assert st == 200 and h.get("x-torrix-run-id"), (st, hdrs)
        assert "chunked" in h.get("transfer-encoding", "")
        deadline = time.monotonic() + 2
        while not c.closed_by_peer(0.1):
            c._fill()
            assert time.monotonic() < deadline, "connection left open"
        # a cut stream must not end with the terminating 0-length chunk
        assert not c.buf.endswith(b"0\r\n\r\n"), c.buf
        assert b"hello there" in c.buf
    run = stack.run(h["x-torrix-run-id"])
    assert run["flags"].get("cancelled") or run["flags"].get("error"), run


def test_upstream_sends_nothing_502(stack, edge):
    e, k = edge
    r = stack.chat(k["key"], headers={"x-edge-mode": "nothing"})
    e502 = assert_openai_error(r, 502)
    assert e502["type"]
    assert r.headers.get("x-torrix-run-id")
    run = stack.run(r.headers["x-torrix-run-id"])
    assert run["status"] == 502 and run["flags"].get("error"), run


def test_upstream_port_closed_openai_502(stack):
    k = ready_key(stack)
    dead = free_port()
    stack.api.ok("PUT", "/providers/openai",
                 {"base_url": "http://127.0.0.1:%d/v1" % dead,
                  "api_key": UPSTREAM_OPENAI_KEY})
    wait_until(lambda: stack.chat(k["key"]).status_code == 502, 2.0, 0.02,
               "502 from the dead provider")
    r = stack.chat(k["key"])
    e = assert_openai_error(r, 502)
    assert "<html" not in r.text.lower()
    rid = r.headers.get("x-torrix-run-id")
    assert rid and len(rid) == 32
    run = stack.run(rid)
    assert run["status"] == 502, run
    assert run["flags"].get("error"), run
    assert run.get("error_type") or run.get("error"), run
    assert run["model_requested"] == "gpt-4o-mini"
    assert not run["flags"].get("rejected"), run
    assert run["error_type"] == e["code"] == "upstream_error", (e, run)


def test_upstream_port_closed_anthropic_502(stack):
    k = ready_key(stack)
    dead = free_port()
    stack.api.ok("PUT", "/providers/anthropic",
                 {"base_url": "http://127.0.0.1:%d" % dead,
                  "api_key": UPSTREAM_ANTHROPIC_KEY})
    wait_until(lambda: stack.messages(k["key"]).status_code == 502, 2.0,
               0.02, "502 from the dead provider")
    r = stack.messages(k["key"])
    assert_anthropic_error(r, 502)
    assert "<html" not in r.text.lower()
    run = stack.run(r.headers["x-torrix-run-id"])
    assert run["status"] == 502 and run["flags"].get("error"), run
    # streaming request, same answer shape
    r = stack.messages(k["key"], extra={"stream": True})
    assert_anthropic_error(r, 502)
    # OpenAI still works
    assert stack.chat(k["key"]).status_code == 200


# -- x-torrix-run-id and exactly one run per request --------------------------

def test_client_aborts_are_one_run_each(stack):
    k = ready_key(stack)
    # the body cut short, a chunked body cut short, a client gone while the
    # upstream thinks
    c1 = Conn(stack.port)
    c1.send(req_bytes("POST", CHAT, [
        ("Authorization", "Bearer " + k["key"]),
        ("Content-Length", "1000")], content_length=False) + b'{"model"')
    c2 = Conn(stack.port)
    c2.send(req_bytes("POST", CHAT, [
        ("Authorization", "Bearer " + k["key"]),
        ("Transfer-Encoding", "chunked")], content_length=False) +
        b'5\r\n{"mod\r\n')
    c3 = Conn(stack.port)
    c3.send(chat_bytes(k["key"], extra_headers=[("x-mock-delay-ms", "400")]))
    wait_until(lambda: stack.mock.requests, 2.0, 0.01, "c3 upstream")
    time.sleep(0.1)
    for c in (c1, c2, c3):
        c.close()

    def aborted():
        rs = [r for r in stack.runs() if r["endpoint"] != "models"]
        return rs if len(rs) >= 3 else None
    runs = wait_until(aborted, 3.0, 0.05, "3 aborted runs")[0]
    time.sleep(0.6)     # the slow upstream answers: still one run
    runs = [r for r in stack.runs() if r["endpoint"] != "models"]
    assert len(runs) == 3, runs
    for r in runs:
        assert r["status"] == 499 and r["flags"]["cancelled"], r
        assert not r["flags"]["error"], r



def test_every_response_has_run_id_and_one_run(stack):
    k = ready_key(stack, allowed_models=["gpt-4o-mini"])
    ro = ready_key(stack, access="read")
    bad = "sk-torrix-" + "Q" * 43
    over = json.dumps({"model": "gpt-4o-mini", "pad": "p" * 70000})
    calls = [
        lambda: stack.chat(k["key"]),
        lambda: stack.chat(None),
        lambda: stack.chat(bad),
        lambda: stack.chat(k["key"], "gpt-4o"),
        lambda: stack.chat(ro["key"]),
        lambda: stack.gw("POST", CHAT, k["key"], "{nope"),
        lambda: stack.gw("POST", CHAT, k["key"], over),
        lambda: stack.gw("POST", CHAT, k["key"],
                         (over[i:i + 9000].encode()
                          for i in range(0, len(over), 9000))),
        lambda: stack.gw("POST", "/v1/unknown", k["key"], {}),
        lambda: stack.gw("GET", CHAT, k["key"]),
        lambda: stack.gw("GET", "/v1/models", k["key"]),
        lambda: stack.chat(k["key"], headers={"x-mock-status": "503"}),
        lambda: stack.chat(k["key"], headers={"x-mock-status": "429"}),
        lambda: stack.chat(k["key"], extra={"stream": True}),
        lambda: stack.messages(k["key"]),
        lambda: stack.messages(None),
        lambda: stack.chat(k["key"], headers={"x-torrix-sample": "2"}),
        lambda: stack.gw("POST", "/proxy", k["key"], {},
                         headers={"x-target-url": "https://evil.example/x"}),
    ]
    expect = [200, 401, 401, 403, 403, 400, 413, 413, 404, 405, 200, 503,
              429, 200, 403, 401, 400, 403]
    ids, statuses = [], []
    for rnd in range(2):         # sequential
        for call in calls:
            r = call()
            statuses.append(r.status_code)
            rid = r.headers.get("x-torrix-run-id")
            assert rid and len(rid) == 32, (r.status_code, r.headers)
            ids.append(rid)
    # and once more, all at the same time
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(6) as ex:
        rs = list(ex.map(lambda f: f(), calls))
    for r in rs:
        statuses.append(r.status_code)
        ids.append(r.headers.get("x-torrix-run-id"))
        assert ids[-1] and len(ids[-1]) == 32, (r.status_code, r.headers)
    assert statuses == expect * 3, list(zip(statuses, expect * 3))
    assert len(set(ids)) == len(ids)
    warm = stack.edge_warm_ids
    assert all(warm)
    runs = run_ids_equal(stack, ids + warm)
    for rid, st in zip(ids, statuses):
        assert runs[rid]["status"] == st, (st, runs[rid])
