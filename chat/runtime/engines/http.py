"""HTTP for an engine that speaks its provider's API without the provider's SDK (the OpenAI-compatible
engine): one aiohttp session per event loop, a JSON POST answered by a server-sent event stream, and a
provider's refusal as `ProviderHTTPError`.

Why not the `openai` SDK: a round through it (its request building and retry loop, httpx, its SSE
decoder) cost ~1.9 ms of CPU against a local upstream before the first chunk, and ~45 µs per streamed
chunk; the same round through aiohttp (its HTTP parser is C) costs ~0.4 ms. The engine needs a POST,
the status, and the events' data: that is all this module does.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import urllib.request
import weakref
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from yarl import URL

# Connections per loop, all providers together (the `openai` SDK allowed 1,000 per client): a stream
# holds one for its whole answer, so hundreds of concurrent turns need hundreds.
POOL_LIMIT = 1000
# A provider's error body is read up to this size (its message is shown cut to a few hundred characters).
_ERROR_BODY_BYTES = 64 * 1024
# After `data: [DONE]`, the rest of the body (the chunked terminator) is read for so long at most, so the
# connection goes back to the pool; a server that keeps sending loses its connection instead.
_DRAIN_SECONDS = 1.0

# The loop's session, and the task that closes it when the loop's runner cancels what is left.
_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[aiohttp.ClientSession, asyncio.Task[None]]] = (
    weakref.WeakKeyDictionary()
)


class ProviderError(Exception):
    """What a provider answered, as opposed to a transport failure."""


class ProviderHTTPError(ProviderError):
    """A non-2xx answer: its status and its body (the decoded JSON, else the text)."""

    def __init__(self, status_code: int, body: Any) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.body = body


class ProviderStreamError(ProviderError):
    """An `{"error": ...}` object in a stream that had started well."""

    def __init__(self, message: str, body: Any) -> None:
        super().__init__(message)
        self.message = message
        self.body = body


def loop_session() -> aiohttp.ClientSession:
    """The running loop's session: one connection pool shared by every engine and round on the loop (no
    new TCP or TLS handshake per round). A session belongs to the loop it was made on; it is closed when
    the loop's runner (`asyncio.run`, a test's loop) cancels the tasks left at its end."""
    loop = asyncio.get_running_loop()
    held = _sessions.get(loop)
    if held is not None and not held[0].closed:
        return held[0]
    # No trust_env: aiohttp would then look up the proxy and read ~/.netrc on a thread for every request
    # (two thread hops per round), and a netrc entry for the provider's host would refuse our own
    # Authorization header. The proxy comes from `proxy_for` instead.
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=POOL_LIMIT))
    _sessions[loop] = (session, loop.create_task(_closed_at_the_end(session), name="engines.http session"))
    return session


async def _closed_at_the_end(session: aiohttp.ClientSession) -> None:
    loop = asyncio.get_running_loop()
    try:
        await loop.create_future()  # until cancelled
    finally:
        held = _sessions.get(loop)
        if held is not None and held[0] is session:
            del _sessions[loop]  # the entry holds the loop (through its task): the loop may go now
        await session.close()


_PROXY_SCHEMES = ("http", "https", "all", "no")


def proxy_for(target: URL) -> tuple[URL | None, dict[str, str]]:
    """The proxy for `target` from HTTP_PROXY / HTTPS_PROXY / ALL_PROXY and NO_PROXY (their lower-case forms
    too), as the `openai` SDK's httpx applied them, and the proxy's credentials as a `Proxy-Authorization`
    header. An HTTPS proxy is not one aiohttp can use: the request goes direct, as with aiohttp's own
    `trust_env`. The four variables are read by name on every round (urllib's own lookup decodes the whole
    environment, twice per round); the answer for their values and the target's origin is kept."""
    values = tuple(
        os.environ.get(lower, os.environ.get(upper))  # the lower-case form first, as urllib reads them
        for lower, upper in (
            ("http_proxy", "HTTP_PROXY"),
            ("https_proxy", "HTTPS_PROXY"),
            ("all_proxy", "ALL_PROXY"),
            ("no_proxy", "NO_PROXY"),
        )
    )
    return _proxy_for(target.scheme, target.host, values)


@functools.lru_cache(maxsize=256)
def _proxy_for(scheme: str, host: str | None, values: tuple[str | None, ...]) -> tuple[URL | None, dict[str, str]]:
    proxies = {name: value for name, value in zip(_PROXY_SCHEMES, values, strict=True) if value}
    # typeshed omits it; urllib's NO_PROXY rules (suffixes, ports, `*`) for the proxies given.
    if host is not None and urllib.request.proxy_bypass_environment(host, proxies):  # type: ignore[attr-defined]
        return None, {}
    configured = proxies.get(scheme) or proxies.get("all")
    proxy = URL(configured) if configured else None
    if proxy is None or proxy.scheme != "http":
        return None, {}
    if not proxy.user:
        return proxy, {}
    return proxy.with_user(None), {"Proxy-Authorization": aiohttp.encode_basic_auth(proxy.user, proxy.password or "")}


async def post_events(
    session: aiohttp.ClientSession, url: str, *, body: dict[str, Any], headers: dict[str, str], timeout: float
) -> EventStream:
    """POST `body` as JSON; the answer's event stream, or `ProviderHTTPError` for a non-2xx answer.
    `timeout` bounds the connection and every read (the answer's start included), as the SDK's did."""
    target = URL(url)
    proxy, proxy_credentials = proxy_for(target)
    tunnelled = target.scheme == "https"  # the credentials go with the CONNECT, not to the provider
    response = await session.post(
        target,
        proxy=proxy,
        proxy_headers=proxy_credentials if tunnelled else None,
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            **({} if tunnelled else proxy_credentials),
            **headers,
        },
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
        allow_redirects=False,
    )
    if response.status >= 300:
        raw = bytearray()
        try:
            while len(raw) < _ERROR_BODY_BYTES and (chunk := await response.content.readany()):
                raw += chunk
        finally:
            response.release()
        text = raw[:_ERROR_BODY_BYTES].decode("utf-8", "replace")
        try:
            decoded: Any = json.loads(text)
        except ValueError:
            decoded = text
        raise ProviderHTTPError(response.status, decoded)
    return EventStream(response)


class EventStream:
    """The decoded JSON data of each event of a server-sent event stream, until `data: [DONE]` or the
    end of the body; an `{"error": ...}` object raises `ProviderStreamError`, data that is not JSON
    `ValueError`. Lines end with LF or CRLF; an event's data lines are joined with LF."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._done = False

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for data in self._data():
            if data.startswith("[DONE]"):
                self._done = True
                return
            decoded = json.loads(data)
            if isinstance(decoded, dict) and decoded.get("error"):
                error = decoded["error"]
                message = error.get("message") if isinstance(error, dict) else None
                if not isinstance(message, str) or not message:
                    message = "An error occurred during streaming"
                raise ProviderStreamError(message, error)
            yield decoded

    async def _data(self) -> AsyncIterator[str]:
        """Each event's data, as the bytes arrive (a line split over reads is joined once, when whole)."""
        pending: list[bytes] = []
        data: list[str] = []
        async for chunk in self._response.content.iter_any():
            if b"\n" not in chunk:
                pending.append(chunk)
                continue
            if pending:
                pending.append(chunk)
                chunk, pending = b"".join(pending), []
            *lines, rest = chunk.split(b"\n")
            if rest:
                pending.append(rest)
            for raw in lines:
                line = raw.decode().removesuffix("\r")
                if not line:  # the end of an event
                    if data:
                        yield "\n".join(data)
                        data = []
                    continue
                name, _, value = line.partition(":")
                if name == "data":
                    data.append(value.removeprefix(" "))
        # A last event without its blank line is incomplete: dropped, as the SSE standard says.

    async def close(self) -> None:
        """Give the connection back to the pool once the body is read (after [DONE], its last bytes are
        read first); a body not read to its end closes the connection."""
        response = self._response
        if self._done and not response.content.at_eof():
            try:
                async with asyncio.timeout(_DRAIN_SECONDS):
                    while await response.content.readany():
                        pass
            except (TimeoutError, aiohttp.ClientError):
                response.close()
                return
        response.release()
