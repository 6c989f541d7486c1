"""The OpenAI-compatible engine against a real local HTTP server speaking the streaming protocol,
plus the engine factory."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from chat.runtime.base import (
    EngineDone,
    EngineError,
    EngineEvent,
    Message,
    TextDelta,
    ToolCall,
    ToolCallsRequested,
    ToolSpec,
)
from chat.runtime.engines import OfflineEngine, OpenAIEngine, build_engine, http
from chat.runtime.engines.openai import base_url_host

from .fake_openai import FakeOpenAIServer, free_port

KEY = "sk-test-SECRET-0123456789abcdef"
CALCULATOR = ToolSpec(
    name="calculator",
    description="Safe arithmetic.",
    parameters={"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def engine_for(server: FakeOpenAIServer, **kwargs: Any) -> OpenAIEngine:
    options: dict[str, Any] = {"api_key": KEY, "base_url": server.base_url, "timeout": 5.0, **kwargs}
    return OpenAIEngine("test-model", **options)


def conversation(prompt: str = "Hello") -> list[Message]:
    return [Message("system", "You are a concise assistant."), Message("user", prompt)]


async def collect(
    engine: Any, messages: list[Message], tools: list[ToolSpec] | None = None
) -> tuple[list[EngineEvent], EngineError | None]:
    """Events yielded before the end, and the EngineError that ended the stream if any."""
    events: list[EngineEvent] = []
    try:
        async for event in engine.stream(messages, tools or []):
            events.append(event)
    except EngineError as exc:
        return events, exc
    return events, None


def text_of(events: list[EngineEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def assert_no_secret(error: EngineError | None) -> None:
    assert error is not None
    assert KEY not in error.message
    assert KEY not in str(error)
    assert "SECRET" not in error.message


# --------------------------------------------------------------------------- streaming


async def test_streams_text_in_several_deltas_with_usage(server: FakeOpenAIServer) -> None:
    server.stream_text(
        ["Hel", "lo, ", "wor", "ld!"], usage={"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    )
    events, error = await collect(engine_for(server), conversation())
    assert error is None
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hel", "lo, ", "wor", "ld!"]
    assert events[-1] == EngineDone(
        stop_reason="stop", usage={"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    )

    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = request.body
    assert body["model"] == "test-model"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Hello"},
    ]
    assert "tools" not in body
    assert "temperature" not in body


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}, ensure_ascii=False)


async def test_events_cut_anywhere_between_reads_are_read_whole(server: FakeOpenAIServer) -> None:
    """A line, a CRLF and a UTF-8 character cut between two reads; comments, `event:` and `id:` lines,
    and an event whose data spans two lines, as the SSE standard allows."""
    first = f"data: {chunk({'content': 'Grüße, '})}\r\n\r\n".encode()
    split_at = first.index("ü".encode()) + 1  # inside the two bytes of ü
    multi_line = chunk({"content": "wörld"}).replace(", ", ",\ndata: ", 1)
    server.raw_stream(
        [
            b": a comment\n",
            first[:split_at],
            first[split_at:-3],
            first[-3:],
            f"event: message\nid: 7\ndata: {multi_line}\n\n".encode(),
            f"data: {chunk({}, 'stop')}\n\ndata: [DONE]\n\n".encode(),
        ]
    )
    events, error = await collect(engine_for(server), conversation())
    assert error is None
    assert text_of(events) == "Grüße, wörld"
    assert isinstance(events[-1], EngineDone) and events[-1].stop_reason == "stop"


async def test_an_error_object_mid_stream_is_a_provider_error_after_the_text(server: FakeOpenAIServer) -> None:
    server.raw_stream(
        [
            f"data: {chunk({'content': 'so far '})}\n\n".encode(),
            b'data: {"error": {"message": "the upstream overloaded", "type": "server_error"}}\n\n',
        ]
    )
    events, error = await collect(engine_for(server), conversation())
    assert text_of(events) == "so far "
    assert error is not None and error.code == "provider_error"
    assert error.message == f"the provider at 127.0.0.1:{server.port} reported an error: the upstream overloaded"


async def test_rounds_reuse_one_connection(server: FakeOpenAIServer) -> None:
    """After `[DONE]` the body's end is read, so the connection goes back to the pool for the next round."""
    for text in ("one", "two", "three"):
        server.raw_stream([f"data: {chunk({'content': text}, 'stop')}\n\ndata: [DONE]\n\n".encode()])
    engine = engine_for(server)
    for _ in range(3):
        _, error = await collect(engine, conversation())
        assert error is None
    assert len({request.client_port for request in server.requests}) == 1


def test_a_loops_connections_close_when_its_runner_ends(server: FakeOpenAIServer) -> None:
    """The session of a loop that ends (`asyncio.run`, a test's loop) is closed by the task its runner
    cancels at the end: no unclosed session or connector is left behind."""
    server.stream_text(["a"])
    sessions, loops = [], []

    async def one_round() -> None:
        _, error = await collect(engine_for(server), conversation())
        assert error is None
        sessions.append(http.loop_session())
        loops.append(asyncio.get_running_loop())

    asyncio.run(one_round())
    assert sessions[0].closed
    assert loops[0] not in http._sessions  # its entry (which holds the loop) is gone with it


# --------------------------------------------------------------------------- proxies and the environment


PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
)


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


async def test_a_proxy_from_the_environment_carries_the_round(
    server: FakeOpenAIServer, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY applies as it did through the SDK's httpx, its credentials as basic auth: the fake
    server is the proxy here, and the provider's host does not even resolve."""
    no_proxy_env.setenv("HTTP_PROXY", f"http://someone:pa55@127.0.0.1:{server.port}")
    server.stream_text(["via the proxy"])
    engine = OpenAIEngine("test-model", api_key=KEY, base_url="http://provider.invalid/v1", timeout=5.0)
    events, error = await collect(engine, conversation())
    assert error is None and text_of(events) == "via the proxy"
    (request,) = server.requests
    assert request.path == "http://provider.invalid/v1/chat/completions"  # the absolute form a proxy gets
    assert request.headers["proxy-authorization"] == "Basic c29tZW9uZTpwYTU1"  # someone:pa55
    assert request.headers["authorization"] == f"Bearer {KEY}"


async def test_no_proxy_sends_the_round_direct(server: FakeOpenAIServer, no_proxy_env: pytest.MonkeyPatch) -> None:
    no_proxy_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    no_proxy_env.setenv("NO_PROXY", "localhost,127.0.0.1")
    server.stream_text(["direct"])
    events, error = await collect(engine_for(server), conversation())
    assert error is None and text_of(events) == "direct"
    assert server.requests[0].path == "/v1/chat/completions"


async def test_a_netrc_entry_for_the_providers_host_changes_nothing(
    server: FakeOpenAIServer, no_proxy_env: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """The engine sends its own key: credentials in ~/.netrc for the same host are not read (aiohttp's
    `trust_env` read them and then refused the request for carrying two authorizations)."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password elsewhere\n")
    netrc.chmod(0o600)
    no_proxy_env.setenv("NETRC", str(netrc))
    server.stream_text(["ok"])
    events, error = await collect(engine_for(server), conversation())
    assert error is None and text_of(events) == "ok"
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


class CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor, counting what is handed to it."""

    submitted = 0

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return super().submit(*args, **kwargs)


def test_a_round_hands_nothing_to_a_thread(server: FakeOpenAIServer, no_proxy_env: pytest.MonkeyPatch) -> None:
    """The proxy is looked up on the loop: aiohttp's `trust_env` sent the proxy lookup and the netrc read
    to the default executor on every request, two thread hops per round."""
    server.stream_text(["warm"]).stream_text(["one"]).stream_text(["two"])
    executor = CountingExecutor(max_workers=1)

    async def rounds() -> None:
        asyncio.get_running_loop().set_default_executor(executor)
        engine = engine_for(server)
        await collect(engine, conversation())  # the session and its connection exist
        executor.submitted = 0
        for _ in range(2):
            _, error = await collect(engine, conversation())
            assert error is None

    asyncio.run(rounds())  # a loop of its own: its default executor goes with it
    assert executor.submitted == 0


async def test_sampling_settings_are_sent(server: FakeOpenAIServer) -> None:
    server.stream_text(["ok"], finish_reason="length")
    engine = engine_for(server, temperature=0.2, top_p=0.9, max_tokens=64)
    events, error = await collect(engine, conversation())
    assert error is None
    assert isinstance(events[-1], EngineDone)
    assert events[-1].stop_reason == "length"
    body = server.requests[0].body
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.2, 0.9, 64)


def test_openai_itself_gets_max_completion_tokens() -> None:
    engine = OpenAIEngine("gpt-4o-mini", api_key=KEY, base_url=None, timeout=5, max_tokens=100)
    kwargs = engine._request_kwargs(conversation(), [])
    assert kwargs["max_completion_tokens"] == 100
    assert "max_tokens" not in kwargs


async def test_full_tool_call_round(server: FakeOpenAIServer) -> None:
    arguments = {"expression": "17.5% of 2,340"}
    server.stream_tool_calls([("call_abc", "calculator", arguments)], pieces=5)
    server.stream_text(["17.5% of 2,340 ", "is 409.5."])
    engine = engine_for(server)
    messages = conversation("What is 17.5% of 2,340?")

    events, error = await collect(engine, messages, [CALCULATOR])
    assert error is None
    assert events == [
        ToolCallsRequested(
            [ToolCall(call_id="call_abc", name="calculator", arguments=arguments)], usage=server.default_usage
        )
    ]
    first = server.requests[0].body
    assert first["tools"] == [
        {
            "type": "function",
            "function": {"name": "calculator", "description": "Safe arithmetic.", "parameters": CALCULATOR.parameters},
        }
    ]

    (call,) = events[0].calls
    result = json.dumps({"expression": "17.5% of 2,340", "result": "409.5"})
    messages += [
        Message("assistant", "", tool_calls=[call]),
        Message("tool", result, tool_call_id=call.call_id, name=call.name),
    ]
    events, error = await collect(engine, messages, [CALCULATOR])
    assert error is None
    assert text_of(events) == "17.5% of 2,340 is 409.5."
    assert isinstance(events[-1], EngineDone)

    second = server.requests[1].body
    assert second["messages"][-2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": json.dumps(arguments)},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": result},
    ]


async def test_interleaved_parallel_tool_calls_are_reassembled(server: FakeOpenAIServer) -> None:
    server.stream_tool_calls(
        [
            ("call_1", "inventory_get_item", {"sku": "A-1002"}),
            ("call_2", "inventory_low_stock", {"threshold": 3}),
        ],
        pieces=3,
        text=["Let me check. "],
    )
    events, error = await collect(engine_for(server), conversation(), [CALCULATOR])
    assert error is None
    assert text_of(events) == "Let me check. "
    assert events[-1] == ToolCallsRequested(
        [
            ToolCall("call_1", "inventory_get_item", {"sku": "A-1002"}),
            ToolCall("call_2", "inventory_low_stock", {"threshold": 3}),
        ],
        usage=server.default_usage,  # a tool round's tokens count towards the turn too
    )


async def test_tool_call_with_empty_arguments(server: FakeOpenAIServer) -> None:
    server.stream_tool_calls([("call_t", "current_time", "")])
    events, error = await collect(engine_for(server), conversation(), [CALCULATOR])
    assert error is None
    assert events == [ToolCallsRequested([ToolCall("call_t", "current_time", {})], usage=server.default_usage)]


async def test_bad_tool_arguments_are_a_malformed_stream(server: FakeOpenAIServer) -> None:
    server.stream_tool_calls([("call_x", "calculator", '{"expression": "2+')])
    _, error = await collect(engine_for(server), conversation(), [CALCULATOR])
    assert error is not None
    assert error.code == "malformed_stream"


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("status", [500, 503, 400, 429])
async def test_http_errors_are_provider_errors(server: FakeOpenAIServer, status: int) -> None:
    server.error(status, "the model is overloaded")
    events, error = await collect(engine_for(server), conversation())
    assert events == []
    assert error is not None
    assert error.code == "provider_error"
    assert str(status) in error.message
    assert "the model is overloaded" in error.message
    assert len(server.requests) == 1  # no retries


async def test_401_is_a_provider_error_without_the_key(server: FakeOpenAIServer) -> None:
    server.error(401, f"Incorrect API key provided: {KEY}.", type="invalid_request_error", code="invalid_api_key")
    _, error = await collect(engine_for(server), conversation())
    assert error is not None
    assert error.code == "provider_error"
    assert "401" in error.message
    assert_no_secret(error)
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


async def test_mid_stream_disconnect_keeps_the_partial_text(server: FakeOpenAIServer) -> None:
    server.disconnect(["partial ", "text"])
    events, error = await collect(engine_for(server), conversation())
    assert text_of(events) == "partial text"
    assert all(isinstance(e, TextDelta) for e in events)
    assert error is not None
    assert error.code in {"connection_error", "malformed_stream"}
    assert_no_secret(error)


async def test_stream_ending_without_finish_reason_is_malformed(server: FakeOpenAIServer) -> None:
    server.stream_text(["half ", "a reply"], finish_reason=None, done=False)
    events, error = await collect(engine_for(server), conversation())
    assert text_of(events) == "half a reply"
    assert error is not None
    assert error.code == "malformed_stream"


@pytest.mark.parametrize(
    "payload",
    [
        "{this is not json",
        '{"choices": "nope"}',
        '{"choices": [{"delta": {"content": 5}}]}',
        '["a list"]',
        '{"choices": [{"delta": {"tool_calls": "nope"}}]}',
        '{"choices": [{"delta": {"tool_calls": [{"index": "x"}]}}]}',
        '{"usage": {"prompt_tokens": "many"}, "choices": []}',
    ],
)
async def test_invalid_chunks_are_malformed(server: FakeOpenAIServer, payload: str) -> None:
    server.garbage(["ok "], payload=payload)
    events, error = await collect(engine_for(server), conversation())
    assert text_of(events) == "ok "
    assert error is not None
    assert error.code == "malformed_stream"


async def test_slow_provider_times_out(server: FakeOpenAIServer) -> None:
    server.sleep(3.0)
    events, error = await collect(engine_for(server, timeout=0.3), conversation())
    assert events == []
    assert error is not None
    assert error.code == "timeout"
    assert_no_secret(error)


async def test_overall_timeout_bounds_a_trickling_stream(server: FakeOpenAIServer) -> None:
    server.stream_text(["tick "] * 20, chunk_delay=0.1)
    events, error = await collect(engine_for(server, timeout=1.0, total_timeout=0.5), conversation())
    assert error is not None
    assert error.code == "timeout"
    assert 0 < len(events) < 20


async def test_connection_refused() -> None:
    engine = OpenAIEngine("m", api_key=KEY, base_url=f"http://127.0.0.1:{free_port()}/v1", timeout=2.0)
    events, error = await collect(engine, conversation())
    assert events == []
    assert error is not None
    assert error.code == "connection_error"
    assert_no_secret(error)


async def test_missing_key_without_base_url_fails_clearly() -> None:
    engine = OpenAIEngine("gpt-4o-mini", api_key="", base_url=None, timeout=2.0)
    _, error = await collect(engine, conversation())
    assert error is not None
    assert error.code == "provider_error"
    assert "OPENAI_API_KEY" in error.message


async def test_empty_key_is_allowed_with_a_base_url(server: FakeOpenAIServer) -> None:
    server.stream_text(["hi"])
    events, error = await collect(engine_for(server, api_key=""), conversation())
    assert error is None
    assert text_of(events) == "hi"
    assert server.requests[0].headers["authorization"] == "Bearer not-needed"


def test_the_key_never_shows_in_the_engines_repr() -> None:
    engine = OpenAIEngine(
        "m", api_key=KEY, base_url="http://user:pw@llm.local:11434/v1", timeout=7, temperature=0.5, top_p=1.0
    )
    assert repr(engine) == "OpenAIEngine(model='m', host='llm.local:11434')"
    assert KEY not in repr(engine) and "pw" not in repr(engine)


# --------------------------------------------------------------------------- factory


def test_factory_defaults_to_offline() -> None:
    for settings in ({}, {"ai-chat": {}}, {"ai-chat": {"ai-api-type": ""}}, {"ai-chat": {"ai-api-type": "offline"}}):
        engine = build_engine(settings)
        assert isinstance(engine, OfflineEngine)
        assert (engine.provider, engine.model) == ("offline", "offline-v1")
    engine = build_engine({"ai-chat": {"ai-engine": "offline-v2"}}, offline_delay=0.02)
    assert isinstance(engine, OfflineEngine)
    assert (engine.model, engine.delay) == ("offline-v2", 0.02)


def test_factory_rejects_unknown_api_types() -> None:
    with pytest.raises(ValueError, match="gemini"):
        build_engine({"ai-chat": {"ai-api-type": "gemini"}})


def test_factory_builds_openai_engines_from_settings() -> None:
    engine = build_engine(
        {
            "ai-chat": {
                "ai-api-type": "openai",
                "ai-temperature": 0.3,
                "ai-top-p": 0.8,
                "ai-max-response-tokens": 256,
                "ai-timeout-seconds": 12,
            }
        },
        api_key=KEY,
    )
    assert isinstance(engine, OpenAIEngine)
    assert (engine.provider, engine.model) == ("openai", "gpt-4o-mini")
    assert (engine.temperature, engine.top_p, engine.max_tokens, engine.timeout) == (0.3, 0.8, 256, 12.0)
    named = build_engine({"ai-chat": {"ai-api-type": "openai", "ai-engine": "llama3.1:8b"}}, timeout=9)
    assert isinstance(named, OpenAIEngine)
    assert (named.model, named.timeout, named.temperature) == ("llama3.1:8b", 9.0, None)


def test_factory_base_url_precedence() -> None:
    openai_settings: dict[str, Any] = {"ai-api-type": "openai"}
    from_settings = build_engine(
        {"ai-chat": openai_settings, "openai-chat": {"openai-base-url": "http://settings.local/v1"}},
        base_url="http://env.local/v1",
    )
    from_env = build_engine(
        {"ai-chat": openai_settings, "openai-chat": {"openai-base-url": ""}}, base_url="http://env.local/v1"
    )
    default = build_engine({"ai-chat": openai_settings})
    assert isinstance(from_settings, OpenAIEngine)
    assert isinstance(from_env, OpenAIEngine)
    assert isinstance(default, OpenAIEngine)
    assert from_settings.base_url == "http://settings.local/v1"
    assert from_env.base_url == "http://env.local/v1"
    assert default.base_url is None
    assert base_url_host(default.base_url) == "api.openai.com"


async def test_factory_never_takes_the_key_from_settings(server: FakeOpenAIServer) -> None:
    server.stream_text(["a"]).stream_text(["b"])
    settings = {
        "ai-chat": {"ai-api-type": "openai"},
        "openai-chat": {"openai-base-url": server.base_url, "openai-api-key": "sk-from-settings"},
    }
    _, error = await collect(build_engine(settings), conversation())
    assert error is None
    _, error = await collect(build_engine(settings, api_key=KEY, base_url=server.base_url), conversation())
    assert error is None
    assert [r.headers["authorization"] for r in server.requests] == ["Bearer not-needed", f"Bearer {KEY}"]


async def test_the_server_key_is_never_sent_to_a_base_url_other_than_the_servers(server: FakeOpenAIServer) -> None:
    """A profile may point at another server (Ollama, vLLM); the server's key must not follow it."""
    server.stream_text(["a"])
    settings = {"ai-chat": {"ai-api-type": "openai"}, "openai-chat": {"openai-base-url": server.base_url}}
    _, error = await collect(build_engine(settings, api_key=KEY, base_url="http://127.0.0.1:1/v1"), conversation())
    assert error is None
    assert [r.headers["authorization"] for r in server.requests] == ["Bearer not-needed"]
