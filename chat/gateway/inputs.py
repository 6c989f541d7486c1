"""What an OpenAI-compatible request asks for, as a turn's input: the prompt, the system prompt, the
earlier messages and the engine overrides (a `system` message -> `system_prompt`; `temperature`,
`top_p`, `max_tokens` / `max_completion_tokens` -> `step_settings_patch.ai-chat.*`). Plain Python: what
this gateway does not do is refused (400), never dropped."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from profiles.errors import InvalidInput, ProfileError

from ..services import MAX_PROMPT_CHARS
from .errors import UnsupportedParameter

CONVERSATION_HEADER = "X-Conversation-Id"
TURN_HEADER = "X-Turn-Id"

CLIENT_TOOL_KEYS = ("tools", "functions", "tool_choice", "function_call", "parallel_tool_calls")
# OpenAI parameter -> the engine setting (`step_settings_patch.ai-chat.<setting>`) it overrides.
ENGINE_PARAMS = {
    "temperature": "ai-temperature",
    "top_p": "ai-top-p",
    "max_tokens": "ai-max-response-tokens",
    "max_completion_tokens": "ai-max-response-tokens",
}
SYSTEM_ROLES = ("system", "developer")
OVERRIDES = "request_overrides"


@dataclass(frozen=True)
class CompletionInput:
    model: str
    prompt: str
    system_prompt: str | None
    history: tuple[tuple[str, str], ...]  # earlier (user, assistant) pairs the client sent
    engine: dict[str, tuple[str, Any]]  # engine setting -> (OpenAI parameter, value), in request order
    stream: bool
    prompt_field: str  # where the prompt is in the request, for errors
    system_field: str = "messages"  # where the system prompt is in the request, for errors

    def overrides(self) -> dict[str, Any]:
        """The request overrides, as REST and websocket clients express them."""
        overrides: dict[str, Any] = {}
        if self.system_prompt is not None:
            overrides["system_prompt"] = self.system_prompt
        if self.engine:
            overrides["step_settings_patch"] = {"ai-chat": {name: value for name, (_, value) in self.engine.items()}}
        return overrides

    def param_for(self, path: str) -> str | None:
        """The OpenAI parameter behind a path the resolution or the turn service reported."""
        if path == "prompt":
            return self.prompt_field
        if path.startswith(f"{OVERRIDES}.system_prompt"):
            return self.system_field
        for name, (param, _) in self.engine.items():
            if path.startswith(f"{OVERRIDES}.step_settings_patch.ai-chat.{name}"):
                return param
        if path.startswith(f"{OVERRIDES}.step_settings_patch") and self.engine:
            return next(iter(self.engine.values()))[0]  # the key itself was refused: the first parameter
        return None


def _text(content: Any, path: str) -> str:
    """A message's text: a string or a list of text parts (other parts are not supported)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise UnsupportedParameter(
                    'only text content parts are supported: {"type": "text", "text": "..."}', field=f"{path}[{index}]"
                )
            texts.append(part["text"])
        return "".join(texts)
    raise InvalidInput("must be a string or a list of text parts", field=path)


def completion_input(body: Mapping[str, Any]) -> CompletionInput:
    """The validated request body (shape and ranges checked by the serializer) as prompt, system
    prompt, history and engine overrides. Refuses what this gateway does not do (400), never drops it."""
    for key in CLIENT_TOOL_KEYS:
        if body.get(key) is not None:
            raise UnsupportedParameter(
                f"client-side tools are not supported (`{key}`): the model is a profile whose own allowed tools "
                "run on the server; their calls are in the answer and in the stored turn",
                field=key,
            )
    if body.get("n") not in (None, 1):
        raise UnsupportedParameter("n must be 1: each request is one turn with one answer", field="n")
    if body.get("stream_options") is not None and not body.get("stream"):
        raise InvalidInput("stream_options is only allowed when stream is true", field="stream_options")
    if None not in (body.get("max_tokens"), body.get("max_completion_tokens")) and (
        body["max_tokens"] != body["max_completion_tokens"]
    ):
        raise InvalidInput("max_tokens and max_completion_tokens differ: send one", field="max_completion_tokens")

    system: list[str] = []
    dialogue: list[tuple[int, str, str]] = []  # (index, role, text)
    for index, message in enumerate(body["messages"]):
        at = f"messages[{index}]"
        role = message["role"]
        if role in ("tool", "function") or any(message.get(k) for k in ("tool_calls", "function_call", "tool_call_id")):
            raise UnsupportedParameter(
                "client-side tool calls and tool results are not supported: the profile's tools run on the server",
                field=at,
            )
        text = _text(message.get("content"), f"{at}.content")
        if role in SYSTEM_ROLES:
            system.append(text)
        else:
            dialogue.append((index, role, text))
    if not dialogue or dialogue[-1][1] != "user":
        raise InvalidInput("the last message (besides system messages) must be the user's prompt", field="messages")
    index, _, prompt = dialogue[-1]
    prompt_field = f"messages[{index}].content"
    if not prompt.strip():
        raise InvalidInput("the prompt must not be blank", field=prompt_field)
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidInput(f"the prompt is longer than {MAX_PROMPT_CHARS} characters", field=prompt_field)
    earlier = dialogue[:-1]
    history = []
    for pair in range(0, len(earlier), 2):
        user, assistant = earlier[pair], earlier[pair + 1] if pair + 1 < len(earlier) else None
        if user[1] != "user" or assistant is None or assistant[1] != "assistant":
            wrong = user if user[1] != "user" else (assistant or user)
            raise InvalidInput(
                "earlier messages must be user/assistant pairs (the conversation's turns)",
                field=f"messages[{wrong[0]}]",
            )
        history.append((user[2], assistant[2]))

    engine: dict[str, tuple[str, Any]] = {}
    for param, setting in ENGINE_PARAMS.items():
        if body.get(param) is not None:
            engine.setdefault(setting, (param, body[param]))
    return CompletionInput(
        model=body["model"],
        prompt=prompt,
        system_prompt="\n\n".join(system) if system else None,
        history=tuple(history),
        engine=engine,
        stream=bool(body.get("stream")),
        prompt_field=prompt_field,
    )


@contextlib.contextmanager
def as_request_params(data: CompletionInput) -> Iterator[None]:
    """Errors about the overrides the gateway built name the OpenAI parameter the client sent."""
    try:
        yield
    except ProfileError as exc:
        if exc.field and (exc.field == "prompt" or exc.field.startswith(OVERRIDES)):
            param = data.param_for(exc.field)
            exc.message = f"{param}: {exc.message}" if param else exc.message
            exc.args, exc.field = (exc.message,), param
        raise
