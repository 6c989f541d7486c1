"""Rollout rules without a database: what a rollout body may say, which arm a subject gets, and when a
guard halts it. `profiles.services.rollouts` writes rollouts; `profiles.selectors` serves their arms."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from .errors import InvalidInput

MAX_ARMS = 10
STICKY = ("user", "conversation")
RATE_BOUNDS = ("max_failure_rate", "max_thumbs_down_rate")
GUARD_KEYS = (*RATE_BOUNDS, "max_latency_ms_p95", "min_turns")
BUCKETS = 10_000  # a weight of 1 is 100 buckets


@dataclass(frozen=True)
class RolloutSpec:
    arms: list[dict[str, int]]
    sticky: str
    guard: dict[str, Any]


def _integer(value: Any, *, field: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise InvalidInput(f"must be an integer {bound}", field=field)
    return value


def parse_rollout(body: Any, *, field: str = "") -> RolloutSpec:
    """`{"arms": [{"version", "weight"}], "sticky"?, "guard"?}` checked with field paths: integer
    weights summing to 100, distinct versions, a known `sticky` (default `user`), guard bounds in range.
    Whether each version exists is the service's check."""
    prefix = f"{field}." if field else ""
    if not isinstance(body, dict):
        raise InvalidInput("must be an object with arms, sticky and guard", field=field or "body")
    unknown = sorted(set(body) - {"arms", "sticky", "guard"})
    if unknown:
        raise InvalidInput("unknown key (expected arms, sticky, guard)", field=f"{prefix}{unknown[0]}")
    arms = body.get("arms")
    if not isinstance(arms, list) or not 1 <= len(arms) <= MAX_ARMS:
        raise InvalidInput(f"must be a list of 1 to {MAX_ARMS} arms", field=f"{prefix}arms")
    parsed: list[dict[str, int]] = []
    for i, arm in enumerate(arms):
        at = f"{prefix}arms[{i}]"
        if not isinstance(arm, dict) or set(arm) != {"version", "weight"}:
            raise InvalidInput('must be {"version": int, "weight": int}', field=at)
        version = _integer(arm["version"], field=f"{at}.version", low=1)
        if any(a["version"] == version for a in parsed):
            raise InvalidInput(f"version {version} is in two arms", field=f"{at}.version")
        parsed.append({"version": version, "weight": _integer(arm["weight"], field=f"{at}.weight", low=0, high=100)})
    total = sum(a["weight"] for a in parsed)
    if total != 100:
        raise InvalidInput(f"the weights must sum to 100 (they sum to {total})", field=f"{prefix}arms")
    sticky = body.get("sticky", "user")
    if sticky not in STICKY:
        raise InvalidInput('must be "user" or "conversation"', field=f"{prefix}sticky")
    return RolloutSpec(arms=parsed, sticky=sticky, guard=parse_guard(body.get("guard"), field=f"{prefix}guard"))


def parse_guard(raw: Any, *, field: str) -> dict[str, Any]:
    """`{}` (no guard) or at least one bound and `min_turns` (the turns an arm needs before it is judged)."""
    if raw is None or raw == {}:
        return {}
    if not isinstance(raw, dict):
        raise InvalidInput("must be an object", field=field)
    for key in raw:
        if key not in GUARD_KEYS:
            raise InvalidInput(f"unknown bound (one of: {', '.join(GUARD_KEYS)})", field=f"{field}.{str(key)[:64]}")
    guard: dict[str, Any] = {}
    for key in RATE_BOUNDS:
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidInput("must be a number from 0 to 1", field=f"{field}.{key}")
            if not 0 <= value <= 1:
                raise InvalidInput("must be a number from 0 to 1", field=f"{field}.{key}")
            guard[key] = value
    if "max_latency_ms_p95" in raw:
        guard["max_latency_ms_p95"] = _integer(raw["max_latency_ms_p95"], field=f"{field}.max_latency_ms_p95", low=1)
    if not guard:
        raise InvalidInput(f"names no bound (one of: {', '.join(GUARD_KEYS[:-1])})", field=field)
    if "min_turns" not in raw:
        raise InvalidInput("is required with a bound", field=f"{field}.min_turns")
    guard["min_turns"] = _integer(raw["min_turns"], field=f"{field}.min_turns", low=1, high=1_000_000)
    return guard


# --------------------------------------------------------------------------- serving


@dataclass(frozen=True)
class RolloutSubject:
    """Who a rollout picks an arm for: the user and, in a conversation, the conversation and the arm it
    already runs on (`kept`: (rollout id, version)), which it keeps for its life."""

    user_id: Any = None
    conversation_id: Any = None
    kept: tuple[int, int] | None = None


def pick_arm(*, rollout_id: int, arms: list[dict[str, int]], sticky: str, subject: RolloutSubject) -> dict | None:
    """The subject's arm: the one its conversation kept (while it is still an arm with weight), else by a
    stable hash of (rollout, user) or (rollout, conversation); None without a subject to hash. A sticky
    `conversation` rollout asked outside a conversation (resolve) hashes the user."""
    if subject.kept is not None and subject.kept[0] == rollout_id:
        for arm in arms:
            if arm["version"] == subject.kept[1] and arm["weight"] > 0:
                return arm
    if sticky == "conversation" and subject.conversation_id is not None:
        key = f"conversation:{subject.conversation_id}"
    elif subject.user_id is not None:
        key = f"user:{subject.user_id}"
    elif subject.conversation_id is not None:
        key = f"conversation:{subject.conversation_id}"
    else:
        return None
    digest = hashlib.sha256(f"rollout:{rollout_id}:{key}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % BUCKETS
    edge = 0
    for arm in arms:
        edge += arm["weight"] * (BUCKETS // 100)
        if bucket < edge:
            return arm
    return None  # unreachable: the weights sum to 100


# --------------------------------------------------------------------------- the guard


def finished_turns(stats: dict[str, Any]) -> int:
    return sum(stats.get(k, 0) for k in ("completed", "failed", "cancelled", "interrupted"))


def guard_breach(guard: dict[str, Any], arms: list[dict[str, int]], stats: dict[int, dict[str, Any]]) -> str | None:
    """Why the rollout must halt (the arm and the bound it passed), or None. An arm is judged once it has
    `min_turns` finished turns: failure rate = failed / finished, thumbs-down rate = answers rated down /
    finished, latency = p95 of its completed turns (start to finish)."""
    if not guard:
        return None
    for arm in arms:
        arm_stats = stats.get(arm["version"]) or {}
        finished = finished_turns(arm_stats)
        if finished < guard["min_turns"]:
            continue
        name = f"arm version {arm['version']}"
        checks = (
            ("max_failure_rate", "failure rate", arm_stats.get("failed", 0) / finished),
            ("max_thumbs_down_rate", "thumbs-down rate", arm_stats.get("thumbs_down", 0) / finished),
        )
        for key, what, rate in checks:
            if key in guard and rate > guard[key]:
                return f"{name}: {what} {rate:.2f} > {guard[key]:g} after {finished} turns"
        p95 = arm_stats.get("latency_ms_p95")
        if "max_latency_ms_p95" in guard and p95 is not None and p95 > guard["max_latency_ms_p95"]:
            return f"{name}: latency p95 {p95} ms > {guard['max_latency_ms_p95']} ms after {finished} turns"
    return None
