"""The lifecycle every scripted provider server of the tests shares (fake_openai, fake_anthropic): a real
ThreadingHTTPServer on 127.0.0.1, a script of behaviours consumed in order, the requests it received."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


class LocalServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: Any

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up mid-stream (what the failure tests do) is not an error of the fake."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class ScriptedServer:
    """Mixed into a dataclass that has `requests: list`; call `_init_server()` from `__post_init__`."""

    handler_class: ClassVar[type[BaseHTTPRequestHandler]]
    url_path: ClassVar[str] = ""  # what `base_url` ends with (e.g. "/v1")
    requests: list[Any]

    def _init_server(self) -> None:
        self._script: list[Any] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: LocalServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        server = LocalServer(("127.0.0.1", 0), self.handler_class)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.url_path}"

    @property
    def remaining(self) -> int:
        """Scripted behaviours not consumed yet."""
        with self._lock:
            return len(self._script)

    def _record(self, request: Any) -> None:
        with self._lock:
            self.requests.append(request)
