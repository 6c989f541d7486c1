"""One HTTP request through the project's real ASGI application (`config.asgi.application`)."""

from __future__ import annotations

from asgiref.testing import ApplicationCommunicator


async def fetch(
    path: str, *, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None, body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body); a repeated header
    (Set-Cookie) has its values on separate lines."""
    from config.asgi import application

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "scheme": "http",
    }
    app = ApplicationCommunicator(application, scope)
    await app.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await app.receive_output(timeout=30)
    content = b""
    while True:
        part = await app.receive_output(timeout=30)
        content += part.get("body", b"")
        if not part.get("more_body"):
            break
    headers_out: dict[str, str] = {}
    for name, value in start["headers"]:
        key = name.decode().lower()
        headers_out[key] = f"{headers_out[key]}\n{value.decode()}" if key in headers_out else value.decode()
    return start["status"], headers_out, content
