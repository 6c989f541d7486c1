"""Extension points: what apps register so profiles can be validated and runtimes composed.

`profiles` never imports `chat` or `inventory`; those apps register their middlewares, tools,
extension codecs and engine-setting fields here from `AppConfig.ready()`. This module is plain
Python (no ORM), so validation and composition unit-test without a database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MiddlewareDefinition:
    name: str
    version: int
    display_name: str
    description: str
    schema: dict[str, Any]
    # Builds the runtime object: factory(id=..., config=...). Set by the app that implements it.
    factory: Callable[..., Any] | None = None


@dataclass(frozen=True)
class ToolDefinition:
    name: str
    description: str
    parameters: dict[str, Any]
    writes: bool
    # The mounts that offer it; None: every mount (a general tool like a calculator).
    mounts: frozenset[str] | None = None
    # Django permission a writing tool needs from the connected user, e.g. "inventory.change_item".
    permission: str | None = None
    # The runtime tool object (see chat.runtime.base.Tool).
    implementation: Any = None
    # A tool from a source outside the process (`ToolSource`): the hash of the schema it was offered
    # with, part of every fingerprint of a runtime that allows it (None for the process's own tools).
    schema_hash: str | None = None


@dataclass(frozen=True)
class ToolSource:
    """Tools named `<prefix>:<rest>` that live outside the process (an app's MCP servers): looked up when
    a profile names them, so `profiles` stores and validates the names without knowing the source."""

    prefix: str
    # check(name) -> the problem with a name's form, or None (no I/O: every validation calls it).
    check: Callable[[str], str | None]
    # lookup(names) -> {name: its ToolDefinition, or the problem (no such server or tool)}, one read.
    lookup: Callable[[Sequence[str]], Mapping[str, ToolDefinition | str]]


@dataclass(frozen=True)
class ExtensionCodec:
    key: str
    schema: dict[str, Any]
    # Optional normaliser applied after schema validation (e.g. trim strings).
    normalise: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class StepSettingField:
    section: str
    field: str
    type: str  # JSON schema type: string | number | integer | boolean
    default: Any = None
    description: str = ""
    enum: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    # A secret (API key) is never accepted in a profile or request: it comes from the environment.
    secret: bool = False
    # False: profiles may set it, request overrides may not (e.g. where requests are sent).
    request_overridable: bool = True

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": self.type}
        if self.enum is not None:
            schema["enum"] = list(self.enum)
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return schema


@dataclass(frozen=True)
class EngineChoice:
    """The step settings that choose a conversation's engine and bound what a request may change, and
    the server's own values for them. Registered by the app that runs engines, so `profiles` reads no
    setting of that app and names none of its sections."""

    section: str  # the step-settings section that picks the engine
    api_type: str  # its field naming the engine
    model: str  # its field naming the model ("": the engine's default model)
    max_response_tokens: str  # the fields a request override is bounded on
    timeout_seconds: str
    fallback_api_type: str  # the engine when nothing names one
    # The lowest layer of engine settings (server defaults < profile < request): part of every fingerprint.
    server_defaults: Callable[[], dict[str, dict[str, Any]]]
    # The server's bounds on request overrides: {api_types, models, max_timeout_seconds, max_response_tokens}.
    override_bounds: Callable[[], dict[str, Any]]
    # Each bound and the server setting an admin changes to move it (shown in refusals).
    bound_names: Mapping[str, str]

    def bounded_fields(self) -> tuple[str, ...]:
        return (self.api_type, self.model, self.max_response_tokens, self.timeout_seconds)


NO_ENGINE = EngineChoice(
    section="engine",
    api_type="api-type",
    model="model",
    max_response_tokens="max-response-tokens",
    timeout_seconds="timeout-seconds",
    fallback_api_type="",
    server_defaults=dict,
    override_bounds=lambda: {"api_types": (), "models": (), "max_timeout_seconds": 0, "max_response_tokens": 0},
    bound_names={},
)


class DefinitionError(RuntimeError):
    """Raised at start-up when two apps register the same name."""


@dataclass
class Definitions:
    middlewares: dict[str, MiddlewareDefinition] = field(default_factory=dict)
    tools: dict[str, ToolDefinition] = field(default_factory=dict)
    # Tools kept outside the process, by the prefix of their names (`mcp:` -> an app's MCP servers).
    tool_sources: dict[str, ToolSource] = field(default_factory=dict)
    extensions: dict[str, ExtensionCodec] = field(default_factory=dict)
    step_settings: dict[tuple[str, str], StepSettingField] = field(default_factory=dict)
    # provider -> model used when the engine choice names no model (registered by the engine's app).
    default_models: dict[str, str] = field(default_factory=dict)
    # How each version of a profile behaved, computed by the app that records turns:
    # version_stats(registry=, slug=, since_ms=) -> {version: {turns, completed, ...}}.
    version_stats: Callable[..., dict[int, dict[str, Any]]] | None = None
    # Which settings choose the engine, with the server's defaults and bounds (NO_ENGINE until an app
    # that runs engines registers).
    engine: EngineChoice = NO_ENGINE
    # What an app adds to the rules of moving a label or rolling it out to other versions:
    # check(registry=, slug=, label=, versions=) raises a ProfileError to refuse (an evaluation gate).
    label_move_checks: list[Callable[..., None]] = field(default_factory=list)

    def register_middleware(self, definition: MiddlewareDefinition) -> MiddlewareDefinition:
        self._add(self.middlewares, definition.name, definition, "middleware")
        return definition

    def register_tool(self, definition: ToolDefinition) -> ToolDefinition:
        self._add(self.tools, definition.name, definition, "tool")
        return definition

    def register_tool_source(self, source: ToolSource) -> ToolSource:
        self._add(self.tool_sources, source.prefix, source, "tool source")
        return source

    def tool_source(self, name: str) -> ToolSource | None:
        """The source of a tool name like `mcp:acme/add`, or None for the process's own tools."""
        prefix, colon, _ = name.partition(":")
        return self.tool_sources.get(prefix) if colon else None

    def source_tools(self, names: Iterable[str]) -> dict[str, ToolDefinition | str]:
        """Each named source tool's definition, or the problem with it (one lookup per source)."""
        by_source: dict[str, list[str]] = {}
        for name in names:
            source = self.tool_source(name)
            if source is not None:
                by_source.setdefault(source.prefix, []).append(name)
        found: dict[str, ToolDefinition | str] = {}
        for prefix, wanted in by_source.items():
            found.update(self.tool_sources[prefix].lookup(wanted))
        return found

    def register_extension(self, codec: ExtensionCodec) -> ExtensionCodec:
        self._add(self.extensions, codec.key, codec, "extension codec")
        return codec

    def register_step_setting(self, setting: StepSettingField) -> StepSettingField:
        self._add(self.step_settings, (setting.section, setting.field), setting, "step setting")
        return setting

    def register_engine_choice(self, choice: EngineChoice) -> None:
        if self.engine not in (NO_ENGINE, choice):
            raise DefinitionError("the engine choice is registered twice")
        self.engine = choice

    def register_label_move_check(self, check: Callable[..., None]) -> None:
        if check not in self.label_move_checks:
            self.label_move_checks.append(check)

    def check_label_move(self, *, registry: str, slug: str, label: str, versions: list[int]) -> None:
        for check in self.label_move_checks:
            check(registry=registry, slug=slug, label=label, versions=versions)

    def register_version_stats(self, provider: Callable[..., dict[int, dict[str, Any]]]) -> None:
        if self.version_stats not in (None, provider):
            raise DefinitionError("version stats are registered twice")
        self.version_stats = provider

    def tools_for_mount(self, mount: str) -> list[ToolDefinition]:
        return [tool for _, tool in sorted(self.tools.items()) if tool.mounts is None or mount in tool.mounts]

    def step_setting_sections(self) -> dict[str, list[StepSettingField]]:
        sections: dict[str, list[StepSettingField]] = {}
        for (section, _), setting in sorted(self.step_settings.items()):
            sections.setdefault(section, []).append(setting)
        return sections

    @staticmethod
    def _add(table: dict, key: Any, value: Any, kind: str) -> None:
        existing = table.get(key)
        if existing is not None and existing != value:
            raise DefinitionError(f"{kind} {key!r} is registered twice")
        table[key] = value

    def register_many(self, items: Iterable[Any]) -> None:
        for item in items:
            register: dict[type, Callable[[Any], Any]] = {
                MiddlewareDefinition: self.register_middleware,
                ToolDefinition: self.register_tool,
                ExtensionCodec: self.register_extension,
                StepSettingField: self.register_step_setting,
            }
            register[type(item)](item)


# The process-wide registry. Apps fill it in AppConfig.ready().
definitions = Definitions()
