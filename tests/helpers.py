"""Helpers shared by every test package."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from django.db import connection


def expected_fingerprint(*, registry: str, profile: str, profile_version: int, runtime: Any, engine: Any) -> str:
    """The documented fingerprint, written out here and not with `profiles.resolution.fingerprint`:
    sha256 over canonical JSON (sorted keys, no whitespace, UTF-8) of registry, profile, profile
    version, effective runtime and non-secret engine settings. A fingerprint that loses an input fails."""
    document = {
        "registry": registry,
        "profile": profile,
        "profile_version": profile_version,
        "runtime": runtime,
        "engine": engine,
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


class RecordingEmit:
    """An async `emit` (runtime contract) that keeps every frame it is given, in order."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, frame_type: str, data: dict[str, Any]) -> None:
        self.frames.append((frame_type, data))

    def of_type(self, frame_type: str) -> list[dict[str, Any]]:
        return [data for kind, data in self.frames if kind == frame_type]

    @property
    def events(self) -> list[dict[str, Any]]:
        """The data of the `middleware.event` frames."""
        return self.of_type("middleware.event")


def import_seed() -> Any:
    """Load the demo registries the way `make run` does (settings.PROFILES_SEED_FILE, source `seed`)."""
    from django.conf import settings

    from profiles.yamlio import import_file

    return import_file(settings.PROFILES_SEED_FILE, source="seed")


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that records each POST and answers the next queued status (204)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def in_threads(count: int, work) -> list:
    """`work(i)` in `count` real threads released together; each result, or the exception it raised."""
    barrier, results = threading.Barrier(count), [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:  # collected and asserted on below
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results
