"""A local OpenAI-compatible streaming server for answers of exact shape (127.0.0.1 only).

`POST /v1/chat/completions` streams an answer whose size and number of content deltas are read from
the last user message: `n=<deltas> bytes=<answer bytes>` (optionally `delay_ms=<pause per delta>`);
defaults 10 deltas, 1024 bytes. The answer is ASCII, so bytes == characters.

Two servers give the same answers: `FakeLLM`, a thread per connection inside the calling process
(bench/turn_costs.py), and `python bench/fake_llm.py serve`, one asyncio loop in a process of its own
(bench/servers.py `Upstream`: many concurrent clients, little CPU per request), which also answers
`"stream": false` with one `chat.completion` JSON object.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PARAM = re.compile(r"\b(n|bytes|delay_ms)=(\d+)")
_WORDS = b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "


def answer(size: int) -> str:
    reps = size // len(_WORDS) + 1
    return (_WORDS * reps)[:size].decode()


def pieces(text: str, count: int) -> list[str]:
    count = max(1, min(count, len(text)))
    size, rest = divmod(len(text), count)
    out, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < rest else 0)
        out.append(text[start:end])
        start = end
    return out


def params(body: dict[str, Any]) -> dict[str, int]:
    messages = body.get("messages") or []
    last = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    content = last.get("content") or ""
    if isinstance(content, list):
        content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    found = {k: int(v) for k, v in _PARAM.findall(str(content))}
    return {"n": found.get("n", 10), "bytes": found.get("bytes", 1024), "delay_ms": found.get("delay_ms", 0)}


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(payload)}\n\n".encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _write(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def do_GET(self) -> None:
        body = json.dumps({"object": "list", "data": [{"id": "x", "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        shape = params(body)
        model = str(body.get("model", "x"))
        self.server.requests += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self._write(_chunk(model, {"role": "assistant", "content": ""}))
            for piece in pieces(answer(shape["bytes"]), shape["n"]):
                if shape["delay_ms"]:
                    self.wfile.flush()
                    time.sleep(shape["delay_ms"] / 1000)
                self._write(_chunk(model, {"content": piece}))
            self._write(_chunk(model, {}, "stop"))
            options = body.get("stream_options") or {}
            if options.get("include_usage"):
                usage = {"prompt_tokens": 10, "completion_tokens": shape["n"], "total_tokens": 10 + shape["n"]}
                payload = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000}
                payload.update(model=model, choices=[], usage=usage)
                self._write(f"data: {json.dumps(payload)}\n\n".encode())
            self._write(b"data: [DONE]\n\n")
            self._write(b"")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class FakeLLM:
    """Start/stop in a background thread; `base_url` ends with /v1."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.requests = 0  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- the asyncio server


def _completion(model: str, text: str, n: int) -> bytes:
    """A non-streamed answer (`"stream": false`)."""
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n},
        }
    ).encode()


def _framed(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _head(status: str, content_type: str, length: int | None) -> bytes:
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{size}\r\n\r\n".encode()


async def _respond(body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
    shape = params(body)
    model = str(body.get("model", "x"))
    text = answer(shape["bytes"])
    if not body.get("stream"):
        if shape["delay_ms"]:
            await asyncio.sleep(shape["delay_ms"] * shape["n"] / 1000)
        payload = _completion(model, text, shape["n"])
        writer.write(_head("200 OK", "application/json", len(payload)) + payload)
        return
    writer.write(
        _head("200 OK", "text/event-stream", None) + _framed(_chunk(model, {"role": "assistant", "content": ""}))
    )
    for piece in pieces(text, shape["n"]):
        if shape["delay_ms"]:
            await writer.drain()
            await asyncio.sleep(shape["delay_ms"] / 1000)
        writer.write(_framed(_chunk(model, {"content": piece})))
    tail = [_chunk(model, {}, "stop")]
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {"prompt_tokens": 10, "completion_tokens": shape["n"], "total_tokens": 10 + shape["n"]}
        payload = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000}
        payload.update(model=model, choices=[], usage=usage)
        tail.append(f"data: {json.dumps(payload)}\n\n".encode())
    tail.append(b"data: [DONE]\n\n")
    writer.write(b"".join(_framed(t) for t in tail) + b"0\r\n\r\n")


async def _connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 with keep-alive: POST …/chat/completions, GET …/models."""
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            raw = await reader.readexactly(int(headers.get("content-length") or 0))
            if method == "POST" and path.rstrip("/").endswith("/chat/completions"):
                await _respond(json.loads(raw or b"{}"), writer)
            elif method == "GET" and "/models" in path:
                payload = json.dumps({"object": "list", "data": [{"id": "x", "object": "model"}]}).encode()
                writer.write(_head("200 OK", "application/json", len(payload)) + payload)
            else:
                payload = b'{"error": {"message": "not found"}}'
                writer.write(_head("404 Not Found", "application/json", len(payload)) + payload)
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def serve() -> None:
    """Listen on a free port of 127.0.0.1, print {"port": N}, serve until stdin closes."""
    server = await asyncio.start_server(_connection, "127.0.0.1", 0, backlog=4096, limit=1 << 20)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__" and sys.argv[1:] == ["serve"]:
    asyncio.run(serve())
