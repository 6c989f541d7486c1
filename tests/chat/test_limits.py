"""An API key's per-minute limits under real concurrency (`chat.limits`): requests released together in
real threads are admitted exactly `rpm` times. Stage 1 runs it on SQLite without Redis (the database
window); stage 2 on PostgreSQL with `REDIS_URL` set (the Redis script)."""

from __future__ import annotations

import pytest

from chat import limits
from profiles import keys
from tests.helpers import in_threads

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]


def test_requests_released_together_are_admitted_exactly_rpm_times(chat_user):
    key = keys.key_create(owner=chat_user, name="burst", scopes=["*"], rpm=5).key

    results = in_threads(12, lambda i: limits.admit(key))

    admitted = [r for r in results if isinstance(r, limits.Window)]
    refused = [r for r in results if isinstance(r, limits.RateLimited)]
    assert (len(admitted), len(refused)) == (5, 7), results
    assert sorted(w.requests for w in admitted) == [1, 2, 3, 4, 5]
    assert all(r.window.requests == 5 and r.retry_after >= 1 for r in refused)


def test_tokens_of_finished_turns_close_the_window_at_tpm(chat_user):
    key = keys.key_create(owner=chat_user, name="tokens", scopes=["*"], tpm=100).key
    assert limits.admit(key).tokens == 0

    limits.record_tokens(key_id=key.pk, tokens=60)
    assert limits.admit(key).tokens == 60
    limits.record_tokens(key_id=key.pk, tokens=50)

    with pytest.raises(limits.RateLimited) as refused:
        limits.admit(key)
    assert refused.value.window.tokens == 110
    assert refused.value.window.headers()["x-ratelimit-remaining-tokens"] == "0"
    assert "100 tokens per minute" in refused.value.message
