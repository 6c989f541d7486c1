"""profiles.api.throttling: DRF's rate throttles over per-slice counts (a record that stays small)."""

from __future__ import annotations

import random
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from rest_framework import throttling as drf

from profiles.api.throttling import SLICES, ScopedRateThrottle, UserRateThrottle


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock(1_000_000.0)
    monkeypatch.setattr(drf.SimpleRateThrottle, "timer", staticmethod(fake))
    return fake


def request(user_id: int = 7) -> SimpleNamespace:
    return SimpleNamespace(user=SimpleNamespace(is_authenticated=True, pk=user_id), META={})


def user_throttle(monkeypatch, rate: str) -> type[UserRateThrottle]:
    monkeypatch.setattr(drf.SimpleRateThrottle, "THROTTLE_RATES", {"user": rate})
    return UserRateThrottle


def test_a_client_gets_the_rate_then_a_refusal_that_says_when_the_next_request_is_admitted(clock, monkeypatch):
    throttle = user_throttle(monkeypatch, "3/min")
    admitted = []
    for at in (0, 10, 20, 30):
        clock.now = 1_000_000.0 + at
        admitted.append(throttle().allow_request(request(), None))
    refused = throttle()
    assert not refused.allow_request(request(), None)

    wait = refused.wait()

    assert admitted == [True, True, True, False]
    assert wait == pytest.approx(31.0)  # the first request's second leaves the minute at +61 s
    clock.now += wait - 0.01
    assert not throttle().allow_request(request(), None)
    clock.now += 0.01
    assert throttle().allow_request(request(), None)


def test_each_client_has_its_own_count(clock, monkeypatch):
    throttle = user_throttle(monkeypatch, "1/min")

    assert throttle().allow_request(request(1), None)
    assert throttle().allow_request(request(2), None)
    assert not throttle().allow_request(request(1), None)


def test_no_window_ever_admits_more_than_the_rate_and_it_admits_about_what_an_exact_record_does(clock, monkeypatch):
    throttle = user_throttle(monkeypatch, "20/min")
    rng = random.Random(5)
    arrivals = sorted(
        [rng.uniform(0, 600) for _ in range(600)]
        + [rng.uniform(t - 1, t + 1) for t in range(60, 600, 60) for _ in range(15)]
    )
    sliced, exact = [], []
    for at in arrivals:
        clock.now = 1_000_000.0 + at
        if throttle().allow_request(request(1), None):
            sliced.append(at)
        if drf.UserRateThrottle().allow_request(request(2), None):  # DRF's exact record, for comparison
            exact.append(at)

    assert max(sum(1 for u in sliced if t - 60 < u <= t) for t in sliced) <= 20
    assert len(sliced) >= 0.95 * len(exact)


def test_a_clients_record_stays_small_whatever_the_rate(clock, monkeypatch):
    monkeypatch.setattr(drf.SimpleRateThrottle, "THROTTLE_RATES", {"turns": "100000/min"})
    view = SimpleNamespace(throttle_scope="turns")
    for i in range(5000):
        clock.now = 1_000_000.0 + i * 0.01
        assert ScopedRateThrottle().allow_request(request(), view)

    record = cache.get("throttle_turns_7")

    assert len(record) <= SLICES + 1  # DRF's own: 5,000 timestamps, all loaded and stored each request
    assert sum(record.values()) == 5000


def test_a_record_drf_stored_before_the_upgrade_is_counted(clock, monkeypatch):
    throttle = user_throttle(monkeypatch, "3/min")
    cache.set("throttle_user_7", [clock.now - 1, clock.now - 20, clock.now - 30])  # DRF's: newest first

    assert not throttle().allow_request(request(), None)
    clock.now += 31  # the oldest has left the window (and its second too)
    assert throttle().allow_request(request(), None)


def test_a_view_without_a_scope_is_not_throttled(clock):
    assert ScopedRateThrottle().allow_request(request(), SimpleNamespace())


def test_no_view_uses_drfs_own_rate_throttles():
    """Their record grows with the rate: the project's views take the sliced ones from this module."""
    root = Path(__file__).resolve().parents[2]
    users = [
        str(path.relative_to(root))
        for app in ("config", "profiles", "chat", "inventory")
        for path in (root / app).rglob("*.py")
        if path.name != "throttling.py"
        and re.search(
            r"rest_framework\.throttling import [^\n]*(Scoped|User|Anon|Simple)RateThrottle", path.read_text()
        )
    ]
    assert users == []
