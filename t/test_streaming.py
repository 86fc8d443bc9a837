"""SSE streams pass through frame by frame."""

import json
import time

SLOW = {"x-mock-chunks": "5", "x-mock-frame-delay-ms": "200"}


def read_frames(r):
    """[(seconds since the request, frame text)] as the frames arrive."""
    t0 = time.monotonic()
    frames, buf = [], b""
    for data in r.iter_content(chunk_size=None):
        buf += data
        while b"\n\n" in buf:
            frame, buf = buf.split(b"\n\n", 1)
            frames.append((time.monotonic() - t0, frame.decode()))
    assert buf.strip() == b"", buf
    return frames


def data_of(frame):
    return "\n".join(line[6:] for line in frame.splitlines()
                     if line.startswith("data: "))


def assert_incremental(times):
    """times: arrival of the content frames, 200 ms apart upstream."""
    first, last = times[0], times[-1]
    # 4 gaps of 200 ms between content frames: buffering would bunch them
    assert last - first > 0.6, times
    assert first < 0.4, times


def test_openai_stream(stack):
    k = stack.api.create_key()
    t0 = time.monotonic()
    r = stack.chat(k["key"], extra={"stream": True}, headers=SLOW,
                   stream=True)
    with r:
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers.get("x-torrix-run-id")
        frames = read_frames(r)
    assert time.monotonic() - t0 > 0.8
    datas = [data_of(f) for _, f in frames]
    assert datas[-1] == "[DONE]", datas
    chunks = [json.loads(d) for d in datas[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or ""
                   for c in chunks if c["choices"])
    assert text == "tok0 tok1 tok2 tok3 tok4 ", text
    content = [t for t, f in frames if '"content"' in f]
    assert_incremental(content)
    assert stack.mock.requests[-1].json()["stream"] is True


def test_openai_stream_include_usage(stack):
    k = stack.api.create_key()
    r = stack.chat(k["key"], extra={"stream": True,
                                    "stream_options": {"include_usage": True}},
                   stream=True)
    with r:
        assert r.status_code == 200
        datas = [data_of(f) for _, f in read_frames(r)]
    assert datas[-1] == "[DONE]"
    usage = [json.loads(d)["usage"] for d in datas[:-1]
             if json.loads(d).get("usage")]
    assert usage and usage[-1]["completion_tokens"] == 3, datas


def test_anthropic_stream(stack):
    k = stack.api.create_key()
    r = stack.messages(k["key"], extra={"stream": True}, headers=SLOW,
                       stream=True)
    with r:
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/event-stream")
        frames = read_frames(r)
    events = [f.splitlines()[0] for _, f in frames]
    assert events == ["event: message_start", "event: content_block_start"] \
        + ["event: content_block_delta"] * 5 + \
        ["event: content_block_stop", "event: message_delta",
         "event: message_stop"], events
    assert_incremental([t for t, f in frames if "content_block_delta" in f])
