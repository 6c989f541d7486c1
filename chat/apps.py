from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from profiles.definitions import definitions
        from profiles.mounts import register_mount

        from .mounts import CHAT_MOUNT

        register_mount(CHAT_MOUNT)  # idempotent: ready() may run again (tests, reloaders)

        from .runtime.engine_settings import DEFAULT_MODELS, STARTER_SUGGESTIONS, STEP_SETTINGS

        definitions.register_many(STEP_SETTINGS)
        definitions.register_extension(STARTER_SUGGESTIONS)
        definitions.default_models.update(DEFAULT_MODELS)
        from .engines import register_engine_choice

        register_engine_choice()  # the engine settings' server defaults and override bounds
        from .runtime.middlewares import MIDDLEWARE_DEFINITIONS
        from .runtime.tools import TOOL_DEFINITIONS

        definitions.register_many(MIDDLEWARE_DEFINITIONS)
        definitions.register_many(TOOL_DEFINITIONS)
        from .mcp.source import SOURCE

        definitions.register_tool_source(SOURCE)  # `mcp:<server>/<tool>`: tools of the MCP servers
        from .evaluations.services import gate_check

        definitions.register_label_move_check(gate_check)  # a gated label needs a good enough evaluation

        from .stats import profile_version_stats

        definitions.register_version_stats(profile_version_stats)  # turns are this app's records

        from . import sessions  # noqa: F401 - connects the logout signal: a session's sockets close
