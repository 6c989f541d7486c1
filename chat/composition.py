"""A conversation's runtime from its resolved profile: composed once per fingerprint and mount, with the
engine built from the server's settings (keys and base URLs come from the environment, never from a
profile), and what a turn record and `ws.hello` say about it."""

from __future__ import annotations

import dataclasses
from typing import Any

from django.conf import settings

from profiles.definitions import definitions
from profiles.errors import ProfileUnavailable
from profiles.mounts import get_mount
from profiles.resolution import Resolution
from profiles.stacking import lineage_changes
from profiles.validation import LATEST

from .runtime.composer import Runtime, RuntimeCache, compose
from .runtime.engines import build_engine

runtime_cache = RuntimeCache()


def make_engine(engine_settings: dict[str, dict[str, Any]]) -> Any:
    return build_engine(
        engine_settings,
        api_key=settings.OPENAI_API_KEY,
        base_url=settings.OPENAI_BASE_URL,
        anthropic_api_key=settings.ANTHROPIC_API_KEY,
        anthropic_base_url=settings.ANTHROPIC_BASE_URL,
        timeout=settings.CHAT_ENGINE_TIMEOUT_SECONDS,
        offline_delay=settings.CHAT_OFFLINE_DELAY_SECONDS,
    )


def runtime_for(mount_name: str, resolution: Resolution) -> Runtime:
    """The composer through the cache: the same fingerprint never builds twice. How the version was
    reached (the ref, the label, the rollout arm) is not part of the runtime, so it comes from this
    resolution."""
    mount = get_mount(mount_name)
    runtime = runtime_cache.get_or_build(
        mount.name,
        resolution,
        lambda: compose(
            resolution,
            mount_tools=mount.tool_names(),
            defs=definitions,
            make_engine=make_engine,
            default_history_turns=settings.CHAT_DEFAULT_CONTEXT_TURNS,
        ),
    )
    if (runtime.ref, runtime.label, runtime.rollout) != (resolution.ref, resolution.label, resolution.rollout):
        runtime = dataclasses.replace(runtime, ref=resolution.ref, label=resolution.label, rollout=resolution.rollout)
    return runtime


def runtime_summary(runtime: Runtime) -> dict[str, Any]:
    """What `ws.hello` tells a client about the runtime its next turn runs on."""
    return {
        "runtime_key": runtime.runtime_key,
        "profile": {
            "registry": runtime.registry,
            "slug": runtime.profile,
            "version": runtime.profile_version,
            "ref": runtime.ref or runtime.profile,
            "label": runtime.label,
        },
        "rollout": runtime.rollout,
        "fingerprint": runtime.fingerprint,
        "engine": {"provider": runtime.engine_info["provider"], "model": runtime.engine_info["model"]},
        "tools": runtime.tool_names,
        "middlewares": runtime.middleware_summary(),
    }


def unavailable_summary(error: ProfileUnavailable) -> dict[str, Any]:
    """What `ws.hello` says when the profile the next turn would run on cannot be used (its stack does not
    resolve): that profile, no runtime (`fingerprint` and `engine` null), and why (`unavailable`)."""
    return {
        "runtime_key": error.profile.get("slug", ""),
        "profile": dict(error.profile),
        "rollout": None,
        "fingerprint": None,
        "engine": None,
        "tools": [],
        "middlewares": [],
        "unavailable": {"code": error.code, "message": error.message},
    }


def runtime_record(runtime: Runtime, resolution: Resolution) -> dict[str, Any]:
    """The turn record: the runtime's marker fields, plus the system prompt, the engine settings (never a
    secret: they are not in a resolution), each middleware with its config, and how it was resolved."""
    config = {
        "system_prompt": runtime.system_prompt,
        "engine_settings": runtime.engine_info.get("settings", {}),
        "middlewares": [{"name": m.name, "id": m.id, "config": m.config} for m in runtime.middlewares],
    }
    return {**runtime.record(), "runtime_config": {**config, **resolution.trace()}}


def switch_reason(conversation: Any, runtime: Runtime, resolution: Resolution) -> dict[str, Any]:
    """`{"reason"}` of a `runtime.switched` frame, and for a base layer's new version `layers` (each
    changed layer with its versions) and `layer` (the first of them)."""
    if conversation.current_runtime_key != runtime.runtime_key:
        # Away from a profile the user may no longer use (later switches have their own reasons).
        return {"reason": "access_revoked" if resolution.fallback == "access_revoked" else "profile_changed"}
    rollout = rollout_switch(conversation, resolution)
    if rollout is not None and conversation.current_profile_version != runtime.profile_version:
        return rollout
    if conversation.current_profile_version != runtime.profile_version:
        # A runtime that follows a label changes version only when the label moves.
        return {"reason": "label_moved" if runtime.label and runtime.label != LATEST else "profile_updated"}
    changed = lineage_changes(resolution.previous_lineage, resolution.lineage)
    if changed:
        return {"reason": "profile_updated", "layer": changed[0], "layers": changed}
    before = resolution.previous_tool_schemas
    if before is not None and before != resolution.tool_schemas:
        now = resolution.tool_schemas
        return {"reason": "tools_changed", "tools": sorted(n for n in {*before, *now} if before.get(n) != now.get(n))}
    return {"reason": "runtime_changed"}


def rollout_switch(conversation: Any, resolution: Resolution) -> dict[str, Any] | None:
    """The rollout reason of a version change, None when no rollout is involved: the conversation left
    its arm because the rollout was halted by its guard (`rollout_halted`) or ended (`rollout_ended`), its
    arm lost its weight (`rollout_changed`), or it entered a rollout's arm (`rollout_started`)."""
    was, now, label_rollout = conversation.rollout_id, resolution.rollout, resolution.label_rollout
    if was is None:
        return None if now is None else {"reason": "rollout_started", "rollout": now}
    if now is not None:
        return {"reason": "rollout_changed" if now["id"] == was else "rollout_started", "rollout": now}
    left = {"id": was, "label": resolution.label}
    if label_rollout is not None and label_rollout["id"] == was and label_rollout["status"] == "halted":
        return {"reason": "rollout_halted", "rollout": left}
    return {"reason": "rollout_ended", "rollout": left}


def switched_from(conversation: Any, runtime: Runtime) -> dict[str, Any] | None:
    """What the conversation ran on before, when its next turn runs on another runtime; else None."""
    previous = conversation.current_fingerprint
    if not previous or previous == runtime.fingerprint:
        return None
    return {
        "runtime_key": conversation.current_runtime_key,
        "fingerprint": previous,
        "profile_version": conversation.current_profile_version,
    }
