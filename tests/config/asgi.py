"""One HTTP request through the project's real ASGI application (`config.asgi.application`)."""

from __future__ import annotations

from asgiref.testing import ApplicationCommunicator


async def fetch(
    path: str, *, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body)."""
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
    await app.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await app.receive_output(timeout=30)
    body = b""
    while True:
        part = await app.receive_output(timeout=30)
        body += part.get("body", b"")
        if not part.get("more_body"):
            break
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, body
