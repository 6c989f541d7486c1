"""Per-minute limits of an API key (`rpm`: requests, `tpm`: tokens of its turns), exact across every
worker: a sliding 60 s window kept in Redis when `REDIS_URL` is set (one atomic script per request, on
Redis's own clock), else in the database (one transaction that locks the key's row). A request is admitted
while the requests of the last minute are below `rpm` and their turns' tokens below `tpm`; a turn's
tokens count from when it finishes (`record_tokens`). An unreachable Redis or database is an outage (503
with `Retry-After`), never an unlimited key."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min, Q, Sum

from profiles.errors import Busy
from profiles.models import ApiKey
from profiles.timestamps import now_ms

from .models import KeyRateHit

WINDOW_MS = 60_000

# KEYS: the key's requests and tokens (sorted sets scored by time). ARGV: rpm, tpm (0: none), a member.
# Returns {admitted, requests in the window, tokens in the window, ms until the binding entry leaves}.
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[4])
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local requests = redis.call('ZCARD', KEYS[1])
local tokens = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  tokens = tokens + tonumber(string.match(member, ':(%d+)$'))
end
local function reset(key)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then return tonumber(first[2]) + window - now end
  return 0
end
if rpm > 0 and requests >= rpm then return {0, requests, tokens, reset(KEYS[1])} end
if tpm > 0 and tokens >= tpm then return {0, requests, tokens, reset(KEYS[2])} end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return {1, requests + 1, tokens, reset(KEYS[1])}
"""
RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
"""


@dataclass(frozen=True)
class Window:
    """A key's minute as of this request: what it may do and what it has used (None: no such limit)."""

    rpm: int | None
    tpm: int | None
    requests: int
    tokens: int
    reset_ms: int  # until the entry that binds leaves the window

    def headers(self) -> dict[str, str]:
        """OpenAI's `x-ratelimit-*` headers for the limits the key has."""
        reset = f"{max(self.reset_ms, 0) / 1000:g}s"
        found: dict[str, str] = {}
        for name, limit, used in (("requests", self.rpm, self.requests), ("tokens", self.tpm, self.tokens)):
            if limit is not None:
                found[f"x-ratelimit-limit-{name}"] = str(limit)
                found[f"x-ratelimit-remaining-{name}"] = str(max(limit - used, 0))
                found[f"x-ratelimit-reset-{name}"] = reset
        return found


class RateLimited(Busy):
    """429: the key used its minute. `retry_after`: when the oldest binding entry leaves the window."""

    code = "rate_limit_exceeded"

    def __init__(self, key: ApiKey, window: Window) -> None:
        over = "requests" if window.rpm is not None and window.requests >= window.rpm else "tokens"
        limit = window.rpm if over == "requests" else window.tpm
        super().__init__(
            f"API key {key.name!r} reached its limit of {limit} {over} per minute: "
            f"try again in {math.ceil(max(window.reset_ms, 1) / 1000)} s"
        )
        self.retry_after = max(1, math.ceil(window.reset_ms / 1000))
        self.window = window


@cache
def _redis() -> Any:
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def _names(key_id: int, created_at_ms: int) -> tuple[str, str]:
    """The key's sorted sets. The key's creation time is in the name: a key id reused by another database
    (a test run, a restore) never inherits an old window."""
    name = f"chat:ratelimit:{key_id}.{created_at_ms}"
    return f"{name}:requests", f"{name}:tokens"


def admit(key: ApiKey) -> Window | None:
    """Count this request against the key's minute, or raise `RateLimited` (nothing counted). None: the
    key has no limit (nothing is read or written)."""
    if key.rpm is None and key.tpm is None:
        return None
    if settings.REDIS_URL:
        admitted, requests, tokens, reset = _redis().eval(
            ADMIT, 2, *_names(key.pk, key.created_at_ms), key.rpm or 0, key.tpm or 0, uuid.uuid4().hex, WINDOW_MS
        )
        window = Window(key.rpm, key.tpm, int(requests), int(tokens), int(reset))
    else:
        admitted, window = _admit_in_database(key)
    if not admitted:
        raise RateLimited(key, window)
    return window


@transaction.atomic
def _admit_in_database(key: ApiKey) -> tuple[bool, Window]:
    """The same rule in one transaction: the key's row is locked (PostgreSQL) or the database has one
    writer (SQLite), so two workers never both take the last request of a minute."""
    ApiKey.objects.select_for_update().filter(pk=key.pk).values_list("pk", flat=True).first()
    stamp = now_ms()
    hits = KeyRateHit.objects.filter(key_id=key.pk)
    hits.filter(at_ms__lte=stamp - WINDOW_MS).delete()
    used = hits.aggregate(
        used_requests=Count("pk", filter=Q(tokens=0)),
        used_tokens=Sum("tokens", default=0),
        first_request=Min("at_ms", filter=Q(tokens=0)),
        first_tokens=Min("at_ms", filter=Q(tokens__gt=0)),
    )
    requests, tokens = used["used_requests"], used["used_tokens"]

    def reset(first: int | None) -> int:
        return 0 if first is None else first + WINDOW_MS - stamp

    if key.rpm is not None and requests >= key.rpm:
        return False, Window(key.rpm, key.tpm, requests, tokens, reset(used["first_request"]))
    if key.tpm is not None and tokens >= key.tpm:
        return False, Window(key.rpm, key.tpm, requests, tokens, reset(used["first_tokens"]))
    KeyRateHit.objects.create(key_id=key.pk, at_ms=stamp)
    return True, Window(key.rpm, key.tpm, requests + 1, tokens, reset(used["first_request"] or stamp))


def record_tokens(*, key_id: int, tokens: int) -> None:
    """A turn of the key finished with `tokens` (prompt + completion): they count for the next minute
    (a key without `tpm` keeps nothing)."""
    created = ApiKey.objects.filter(pk=key_id, tpm__isnull=False).values_list("created_at_ms", flat=True).first()
    if tokens <= 0 or created is None:
        return
    if settings.REDIS_URL:  # an entry that expires with the window
        _redis().eval(RECORD, 1, _names(key_id, created)[1], f"{uuid.uuid4().hex}:{tokens}", WINDOW_MS)
    else:
        KeyRateHit.objects.create(key_id=key_id, at_ms=now_ms(), tokens=tokens)
