"""WhiteNoise on the event loop (config.static), through the project's real ASGI application: static
files are still served; other requests are not run on a sync thread by it (tests/chat/test_gateway.py
shows waiting completions no longer bounded by HTTP_SYNC_THREADS)."""

from __future__ import annotations

import pytest
from asgiref.testing import ApplicationCommunicator

pytestmark = pytest.mark.django_db(transaction=True)


async def fetch(path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    from config.asgi import application

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
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
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, body


async def test_a_static_file_is_served_under_asgi():
    status, headers, body = await fetch("/static/favicon.svg")

    assert status == 200
    assert headers["content-type"].startswith("image/svg+xml")
    assert body.startswith(b"<svg")


async def test_a_head_request_for_a_static_file_has_no_body():
    status, headers, body = await fetch("/static/favicon.svg", method="HEAD")

    assert status == 200 and body == b""
    assert int(headers["content-length"]) > 0


async def test_a_missing_static_file_falls_through_to_django():
    status, _, _ = await fetch("/static/no-such-file.css")

    assert status == 404
