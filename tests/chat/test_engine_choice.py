"""Chat tells the platform which engine settings it runs on (`chat.engines`): the server's defaults,
the override bounds with their setting names, and a system check on the default engine."""

from __future__ import annotations

from django.core.checks import run_checks

from chat.engines import ENGINE_CHOICE
from profiles.definitions import definitions
from profiles.overrides import OverrideBounds


def test_chat_registered_its_engine_choice_with_the_platform():
    assert definitions.engine is ENGINE_CHOICE


def test_the_server_bounds_come_from_chat_settings(settings):
    settings.CHAT_OVERRIDE_ALLOWED_API_TYPES = ["offline", "OpenAI "]
    settings.CHAT_OVERRIDE_MAX_TIMEOUT_SECONDS = 12
    bounds = OverrideBounds.server()
    assert (bounds.api_types, bounds.max_timeout_seconds) == (("offline", "openai"), 12)
    assert bounds.source("api_types") == "the server's override bound CHAT_OVERRIDE_ALLOWED_API_TYPES"


def test_the_server_defaults_are_the_lowest_layer_of_engine_settings(settings):
    settings.CHAT_DEFAULT_MODEL = "m-1"
    settings.OPENAI_BASE_URL = "http://user:secret@llm.local:8080/v1?key=1"
    defaults = definitions.engine.server_defaults()
    assert defaults["ai-chat"]["ai-engine"] == "m-1"
    assert defaults["openai-chat"]["openai-base-url"] == "http://llm.local:8080/v1"  # never a secret


def test_an_unknown_default_engine_fails_the_system_checks(settings):
    assert [e.id for e in run_checks() if e.id.startswith("chat.")] == []
    settings.CHAT_DEFAULT_API_TYPE = "bogus"
    assert [e.id for e in run_checks() if e.id.startswith("chat.")] == ["chat.E010"]
