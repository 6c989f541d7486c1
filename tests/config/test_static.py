"""WhiteNoise on the event loop (config.static), through the project's real ASGI application: static
files are still served; other requests are not run on a sync thread by it (tests/chat/test_gateway.py
shows waiting completions no longer bounded by HTTP_SYNC_THREADS)."""

from __future__ import annotations

import pytest

from .asgi import fetch

pytestmark = pytest.mark.django_db(transaction=True)


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
