"""What the engines that stream from a provider's HTTP API share: the `anthropic` engine (through the
official SDK) and the `openai` engine (through aiohttp, `engines.http`).

One client per event loop, a round under an overall deadline, and one mapping of every failure to an
`EngineError` whose message never carries the API key, so the runner can show it as is. A subclass says
how to build its client, open a round's stream and read its events (a stream state with `feed(event)`
returning the event's text and `finish()` returning the round's last event), and which exceptions its
transport raises for a timeout, a connection failure, a refusal (`status_code`, `body`) and an error
reported in the stream (`message`).
"""

from __future__ import annotations

import abc
import asyncio
import re
import weakref
from collections.abc import AsyncIterator
from typing import Any, ClassVar
from urllib.parse import urlsplit

from chat.runtime.base import EngineError, EngineEvent, Message, TextDelta, ToolCallsRequested, ToolSpec
from chat.runtime.toolnames import ProviderNames

# Sent when no key goes with the request (a profile's own server, a local one): SDKs want a credential.
PLACEHOLDER_API_KEY = "not-needed"
# The whole round (request + stream) may take this many times the per-read timeout.
TOTAL_TIMEOUT_FACTOR = 5.0
_MAX_ERROR_CHARS = 300
_SECRET_PATTERNS = (
    re.compile(r"\bsk-[A-Za-z0-9_*.\-]{4,}"),
    re.compile(r"(?i)\bbearer\s+\S+"),
    re.compile(r"(?i)\bx-api-key\b[\"']?\s*[:=]\s*[\"']?[^\s\"',}]+"),
)


def url_host(base_url: str | None, default: str) -> str:
    """host[:port] of a base URL (never its user-info), or `default` (the SDK's own host)."""
    if not base_url:
        return default
    parts = urlsplit(base_url)
    host = parts.hostname or base_url
    return f"{host}:{parts.port}" if parts.port else host


class SDKEngine(abc.ABC):
    """Streams one model round through a provider SDK (see the module docstring)."""

    provider: ClassVar[str]
    # The transport's exceptions. `wrapping_errors`: those whose `__cause__` is the network's own error.
    timeout_errors: ClassVar[tuple[type[BaseException], ...]]
    connection_errors: ClassVar[tuple[type[BaseException], ...]]
    status_errors: ClassVar[tuple[type[BaseException], ...]]
    api_errors: ClassVar[tuple[type[BaseException], ...]]
    wrapping_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    default_host: ClassVar[str]
    key_setting: ClassVar[str]  # where the server's key comes from, for the "no API key" message
    base_url_setting: ClassVar[str]  # the profile setting that points at a server needing no key

    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        base_url: str | None,
        timeout: float,
        max_tokens: int | None = None,
        total_timeout: float | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url or None
        self.timeout = float(timeout)
        self.total_timeout = float(total_timeout) if total_timeout else self.timeout * TOTAL_TIMEOUT_FACTOR
        self.max_tokens = max_tokens
        self._api_key = api_key
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}(model={self.model!r}, host={self.host!r})"

    @property
    def host(self) -> str:
        return url_host(self.base_url, self.default_host)

    # ---- what a provider defines

    @abc.abstractmethod
    def _new_client(self) -> Any:
        """The async client for this engine's key, base URL and timeout (retries off)."""

    @abc.abstractmethod
    async def _open(self, client: Any, messages: list[Message], tools: list[ToolSpec]) -> Any:
        """Start the round's stream (an async iterable of events with `close()`)."""

    @abc.abstractmethod
    def _new_state(self) -> Any:
        """A fresh reader of one round's events (`feed(event) -> text`, `finish() -> last event`)."""

    # ---- shared

    def _client(self) -> Any:
        """One client (and its connection pool) per event loop, reused by every round and turn of this
        runtime: no new TLS handshake per round. An HTTP client belongs to the loop it runs on."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self._new_client()
        return client

    def _redact(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        for pattern in _SECRET_PATTERNS:
            text = pattern.sub("***", text)
        text = " ".join(text.split())
        return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"

    def _status_detail(self, exc: Any) -> str:
        body = exc.body
        detail = ""
        if isinstance(body, dict):
            error = body.get("error", body)
            detail = str(error.get("message", "")) if isinstance(error, dict) else str(error)
        elif isinstance(body, str):
            detail = body
        return self._redact(detail) if detail else "no detail"

    def _debug_cause(self, exc: Exception) -> Exception | None:
        """Chain unexpected exceptions for debugging; drop the transport's, whose text may echo provider
        bodies."""
        known = (
            *self.timeout_errors,
            *self.connection_errors,
            *self.status_errors,
            *self.api_errors,
            TimeoutError,
            ValueError,
        )
        return None if isinstance(exc, known) else exc

    def _map_error(self, exc: BaseException, *, midstream: bool = False) -> EngineError:
        host = self.host
        if isinstance(exc, self.timeout_errors):
            return EngineError("timeout", f"the provider at {host} did not answer within {self.timeout:g}s")
        if isinstance(exc, TimeoutError):  # the overall deadline of the round
            return EngineError("timeout", f"the provider at {host} did not finish within {self.total_timeout:g}s")
        if isinstance(exc, self.connection_errors):
            cause = exc.__cause__ if isinstance(exc, self.wrapping_errors) else exc
            detail = f": {type(cause).__name__}" if cause is not None else ""
            if cause is not None and str(cause):
                detail += f" ({self._redact(str(cause))})"
            if midstream:
                return EngineError("connection_error", f"the connection to the provider at {host} broke{detail}")
            return EngineError("connection_error", f"could not reach the provider at {host}{detail}")
        if isinstance(exc, self.status_errors):
            status_code = getattr(exc, "status_code", 0)
            if midstream and status_code < 400:  # an `error` event in a stream that had started well
                kind = getattr(exc, "type", None)
                kind = f" ({self._redact(kind)})" if isinstance(kind, str) and kind else ""
                return EngineError(
                    "provider_error",
                    f"the provider at {host} reported an error mid-stream{kind}: {self._status_detail(exc)}",
                )
            return EngineError(
                "provider_error", f"the provider at {host} answered HTTP {status_code}: {self._status_detail(exc)}"
            )
        if isinstance(exc, self.api_errors):
            message = str(getattr(exc, "message", "") or "")
            return EngineError("provider_error", f"the provider at {host} reported an error: {self._redact(message)}")
        if isinstance(exc, ValueError):  # a data line that is not JSON
            return EngineError("malformed_stream", f"the provider at {host} sent an invalid stream")
        return EngineError("provider_error", f"the provider at {host} failed: {type(exc).__name__}")

    async def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[EngineEvent]:
        """One round: TextDelta* then ToolCallsRequested or EngineDone; failures raise EngineError."""
        if not self._api_key and not self.base_url:
            raise EngineError(
                "provider_error",
                f"no API key: set {self.key_setting} on the server, or point {self.base_url_setting} at a "
                "server that needs none",
            )
        deadline = asyncio.get_running_loop().time() + self.total_timeout
        client = self._client()
        names = ProviderNames(t.name for t in tools)  # `mcp:acme/add` is offered as `mcp_acme_add`
        if names.renames:
            messages, tools = names.messages(messages), names.specs(tools)
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._open(client, messages, tools)
        except Exception as exc:
            raise self._map_error(exc) from self._debug_cause(exc)
        state = self._new_state()
        iterator = response.__aiter__()
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        event = await anext(iterator)
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    raise self._map_error(exc, midstream=True) from self._debug_cause(exc)
                text = state.feed(event)
                if text:
                    yield TextDelta(text)
        finally:
            await response.close()
        last = state.finish()
        yield names.calls(last) if isinstance(last, ToolCallsRequested) and names.renames else last
