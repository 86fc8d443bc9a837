"""A mock LLM provider (OpenAI and Anthropic shapes) for the Torrix tests.

Runs a ThreadingHTTPServer (HTTP/1.1, keep-alive) in a thread, records every
request and answers in the provider's format.  Per-request controls, as
request headers (nginx forwards them):

    x-mock-status          answer with that status and a provider error body
    x-mock-delay-ms        sleep before answering
    x-mock-chunks          number of SSE content frames (default 3)
    x-mock-frame-delay-ms  sleep between SSE frames
    x-mock-usage           a JSON object: the "usage" the answer carries (in
                           the provider's own field names; for an Anthropic
                           stream, message_start gets it with output_tokens
                           1 and message_delta its output_tokens)
    x-mock-deltas          Anthropic stream: comma-separated cumulative
                           output_tokens, one message_delta event each
    x-mock-model           the "model" the answer names (default: the
                           requested one)
    x-mock-write-bytes     SSE: send the body in HTTP chunks of N bytes, each
                           its own TCP write (TCP_NODELAY), instead of a chunk
                           a frame
    x-mock-usage-always    1: an OpenAI chat stream ends with the usage chunk
    x-mock-fail-models     comma-separated "model=STATUS" (an error body
                           with that status), "model=slow" (sleeps 5 s
                           first), "model=delayN" (sleeps N ms, then answers)
                           or "model=break" (a stream that starts and
                           then drops the connection): per model, so a
                           fallback chain can fail one model and not another
                           even when the request did not ask for it
"""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Request:
    def __init__(self, method, path, headers, body, peer=None):
        self.peer = peer                # (host, port) of the client
        self.method = method
        self.path = path
        self.headers = headers          # list of (name, value) as received
        self.body = body                # bytes

    def header(self, name):
        """The value of the first header with that name, or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)

    def raw(self):
        """Headers and body as one string, to search for leaked secrets."""
        hdrs = "".join("%s: %s\n" % kv for kv in self.headers)
        return hdrs + "\n" + self.body.decode("utf-8", "replace")

    def __repr__(self):
        return "<%s %s>" % (self.method, self.path)


def _openai_error(status):
    return {"error": {"message": "mock error %d" % status,
                      "type": "server_error" if status >= 500
                      else "invalid_request_error",
                      "param": None, "code": "mock_%d" % status}}


def _anthropic_error(status):
    return {"type": "error",
            "error": {"type": "api_error" if status >= 500
                      else "invalid_request_error",
                      "message": "mock error %d" % status}}


def _usage_openai(n):
    return {"prompt_tokens": 11, "completion_tokens": n,
            "total_tokens": 11 + n}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-upstream"

    def log_message(self, fmt, *args):   # quiet
        pass

    # -- plumbing ---------------------------------------------------------

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send_json(self, status, obj, extra=()):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _start_sse(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data):
        n = self._int_header("x-mock-write-bytes", 0)
        if n <= 0:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            return
        if not getattr(self, "_nodelay", False):
            self.connection.setsockopt(socket.IPPROTO_TCP,
                                       socket.TCP_NODELAY, 1)
            self._nodelay = True
        for i in range(0, len(data), n):
            piece = data[i:i + n]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()

    def _end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _int_header(self, name, default):
        v = self.headers.get(name)
        return int(v) if v else default

    def _usage(self, default):
        """The x-mock-usage object, else default."""
        v = self.headers.get("x-mock-usage")
        return json.loads(v) if v else default

    def _model(self, requested):
        return self.headers.get("x-mock-model") or requested

    # -- dispatch ---------------------------------------------------------

    def _handle(self):
        body = self._read_body()
        req = Request(self.command, self.path, list(self.headers.items()),
                      body, self.client_address)
        self.server.mock.record(req)

        delay = self._int_header("x-mock-delay-ms", 0)
        if delay:
            time.sleep(delay / 1000.0)

        path = self.path.split("?", 1)[0]
        anthropic = path.endswith("/messages")

        status = self._int_header("x-mock-status", 0)
        rule = self._fail_rule(body)
        if rule == "slow":
            time.sleep(5)
        elif rule and rule.startswith("delay"):
            time.sleep(int(rule[5:]) / 1000.0)
        elif rule == "break":
            self._start_sse()
            self._chunk(b'data: {"id":"x","object":"chat.completion.chunk",'
                        b'"choices":[{"index":0,"delta":{"content":"hi"}}]}'
                        b'\n\n')
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        elif rule and rule.isdigit():
            status = int(rule)
        if status:
            err = _anthropic_error(status) if anthropic \
                else _openai_error(status)
            return self._send_json(status, err)

        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}

        if self.command == "POST" and path.endswith("/chat/completions"):
            return self._chat(payload)
        if self.command == "POST" and path.endswith("/completions"):
            return self._completions(payload)
        if self.command == "POST" and path.endswith("/embeddings"):
            return self._embeddings(payload)
        if self.command == "POST" and path.endswith("/responses"):
            return self._responses(payload)
        if self.command == "GET" and path.endswith("/models"):
            return self._send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 1700000000,
                 "owned_by": "mock"}
                for m in ("gpt-4o", "gpt-4o-mini", "text-embedding-3-small")]})
        if self.command == "POST" and anthropic:
            return self._messages(payload)
        return self._send_json(200, {"path": self.path,
                                     "method": self.command})

    def _fail_rule(self, body):
        rules = self.headers.get("x-mock-fail-models")
        if not rules:
            return None
        try:
            model = json.loads(body).get("model")
        except (ValueError, AttributeError):
            return None
        for item in rules.split(","):
            name, _, what = item.strip().partition("=")
            if name == model:
                return what
        return None

    def _handle_quietly(self):
        try:
            self._handle()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True   # the client (nginx) went away

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = \
        do_OPTIONS = _handle_quietly

    # -- OpenAI -----------------------------------------------------------

    def _chat(self, p):
        model = self._model(p.get("model", "gpt-4o-mini"))
        n = self._int_header("x-mock-chunks", 3)
        usage = self._usage(_usage_openai(n))
        if not p.get("stream"):
            return self._send_json(200, {
                "id": "chatcmpl-mock", "object": "chat.completion",
                "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant",
                                         "content": "hello from mock"}}],
                "usage": usage})

        fdelay = self._int_header("x-mock-frame-delay-ms", 0) / 1000.0
        self._start_sse()

        def frame(delta, finish=None, usage=None, choices=True):
            obj = {"id": "chatcmpl-mock", "object": "chat.completion.chunk",
                   "created": int(time.time()), "model": model,
                   "choices": [{"index": 0, "delta": delta,
                                "finish_reason": finish}] if choices else []}
            if usage is not None:
                obj["usage"] = usage
            self._chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

        for i in range(n):
            if i and fdelay:
                time.sleep(fdelay)
            frame({"role": "assistant", "content": "tok%d " % i}
                  if i == 0 else {"content": "tok%d " % i})
        frame({}, finish="stop")
        so = p.get("stream_options") or {}
        if (isinstance(so, dict) and so.get("include_usage")) or \
                self.headers.get("x-mock-usage-always") == "1":
            frame(None, usage=usage, choices=False)
        self._chunk(b"data: [DONE]\n\n")
        self._end_chunks()

    def _completions(self, p):
        self._send_json(200, {
            "id": "cmpl-mock", "object": "text_completion",
            "created": int(time.time()),
            "model": self._model(p.get("model", "gpt-3.5-turbo-instruct")),
            "choices": [{"text": "hello", "index": 0, "logprobs": None,
                         "finish_reason": "stop"}],
            "usage": self._usage(_usage_openai(1))})

    def _embeddings(self, p):
        inp = p.get("input", "")
        n = len(inp) if isinstance(inp, list) else 1
        self._send_json(200, {
            "object": "list",
            "model": self._model(p.get("model", "text-embedding-3-small")),
            "data": [{"object": "embedding", "index": i,
                      "embedding": [0.1, 0.2, 0.3]} for i in range(n)],
            "usage": self._usage({"prompt_tokens": 5, "total_tokens": 5})})

    def _responses(self, p):
        model = self._model(p.get("model", "gpt-4o-mini"))
        n = self._int_header("x-mock-chunks", 3)
        usage = self._usage({"input_tokens": 11, "output_tokens": 2,
                             "total_tokens": 13})
        text = "hello" if not p.get("stream") else \
            "".join("tok%d " % i for i in range(n))

        def response(status, with_usage):
            r = {"id": "resp_mock", "object": "response",
                 "created_at": int(time.time()), "status": status,
                 "model": model,
                 "output": [{"type": "message", "id": "msg_mock",
                             "status": "completed", "role": "assistant",
                             "content": [{"type": "output_text",
                                          "text": text,
                                          "annotations": []}]}]
                 if with_usage else [],
                 "usage": usage if with_usage else None}
            return r

        if not p.get("stream"):
            return self._send_json(200, response("completed", True))

        fdelay = self._int_header("x-mock-frame-delay-ms", 0) / 1000.0
        self._start_sse()
        seq = [0]

        def event(name, obj):
            obj = dict(obj, type=name, sequence_number=seq[0])
            seq[0] += 1
            self._chunk(("event: %s\ndata: %s\n\n"
                         % (name, json.dumps(obj))).encode())

        event("response.created",
              {"response": response("in_progress", False)})
        for i in range(n):
            if i and fdelay:
                time.sleep(fdelay)
            event("response.output_text.delta",
                  {"item_id": "msg_mock", "output_index": 0,
                   "content_index": 0, "delta": "tok%d " % i})
        event("response.output_text.done",
              {"item_id": "msg_mock", "output_index": 0,
               "content_index": 0, "text": text})
        event("response.completed",
              {"response": response("completed", True)})
        self._end_chunks()

    # -- Anthropic --------------------------------------------------------

    def _messages(self, p):
        model = self._model(p.get("model", "claude-3-5-haiku-latest"))
        n = self._int_header("x-mock-chunks", 3)
        usage = self._usage({"input_tokens": 11, "output_tokens": n})
        if not p.get("stream"):
            return self._send_json(200, {
                "id": "msg_mock", "type": "message", "role": "assistant",
                "model": model, "stop_reason": "end_turn",
                "stop_sequence": None,
                "content": [{"type": "text", "text": "hello from mock"}],
                "usage": usage})

        fdelay = self._int_header("x-mock-frame-delay-ms", 0) / 1000.0
        self._start_sse()

        def event(name, obj):
            self._chunk(("event: %s\ndata: %s\n\n"
                         % (name, json.dumps(obj))).encode())

        event("message_start", {"type": "message_start", "message": {
            "id": "msg_mock", "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": None,
            "usage": dict(usage, output_tokens=1)}})
        event("content_block_start", {"type": "content_block_start",
                                      "index": 0, "content_block": {
                                          "type": "text", "text": ""}})
        for i in range(n):
            if i and fdelay:
                time.sleep(fdelay)
            event("content_block_delta", {
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": "tok%d " % i}})
        event("content_block_stop", {"type": "content_block_stop",
                                     "index": 0})
        deltas = self.headers.get("x-mock-deltas")
        outs = [int(x) for x in deltas.split(",")] if deltas \
            else [usage.get("output_tokens", n)]
        for out in outs:
            event("message_delta", {"type": "message_delta",
                                    "delta": {"stop_reason": "end_turn",
                                              "stop_sequence": None},
                                    "usage": {"output_tokens": out}})
        event("message_stop", {"type": "message_stop"})
        self._end_chunks()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class MockUpstream:
    """mock = MockUpstream().start(); mock.port; mock.requests; mock.stop()"""

    def __init__(self):
        self._lock = threading.Lock()
        self._requests = []
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.mock = self
        self.port = self.server.server_address[1]
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def record(self, req):
        with self._lock:
            self._requests.append(req)

    @property
    def requests(self):
        with self._lock:
            return list(self._requests)

    def clear(self):
        with self._lock:
            self._requests.clear()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port
