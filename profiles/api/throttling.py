"""DRF's rate throttles with a record per client that stays small whatever the rate.

DRF's `SimpleRateThrottle` keeps one timestamp per request of the window in the cache, and every request
loads, unpickles, trims, prepends to and stores that whole list: its cost grows with the configured rate
(14 µs a request at 60 entries, 100 µs at 3,000, in the process's cache; over the network with
`CACHE_URL`, the list travels both ways). Here a client's window is counted in `SLICES` slices of it: at
most `SLICES + 1` counts per client. A request counts until its whole slice has left the window, so no
window ever admits more than the rate's number of requests; a client may be refused up to one slice's
width (a sixtieth of the period) sooner than with an exact record. The refusal's wait is when the next
request will be admitted (DRF suggests a share of the window instead).
"""

from __future__ import annotations

from typing import Any

from rest_framework import throttling

SLICES = 60


class SlicedRateThrottle(throttling.SimpleRateThrottle):
    """`SimpleRateThrottle` over per-slice counts (`{slice: count}` in the cache). DRF's throttles below
    put it under their own methods (`ScopedRateThrottle.allow_request` picks the view's scope, then
    calls this one)."""

    num_requests: int  # set from the rate by DRF
    duration: int
    counts: dict[int, int] = {}  # the client's slices as the last `allow_request` read them

    def allow_request(self, request: Any, view: Any) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        self.now = self.timer()
        width = self.duration / SLICES
        current = int(self.now // width)
        counts = {at: n for at, n in _slices(self.cache.get(key), width).items() if at >= current - SLICES}
        self.counts = counts  # the slices any part of which is in the window
        if sum(counts.values()) >= self.num_requests:
            return False
        counts[current] = counts.get(current, 0) + 1
        self.cache.set(key, counts, self.duration + width)
        return True

    def wait(self) -> float:
        """Seconds until a request is admitted: until enough of the oldest slices have left the window."""
        width = self.duration / SLICES
        excess = sum(self.counts.values()) - self.num_requests + 1
        for at in sorted(self.counts):
            excess -= self.counts[at]
            if excess <= 0:
                return max(0.0, (at + SLICES + 1) * width - self.now)
        return 0.0


def _slices(stored: Any, width: float) -> dict[int, int]:
    """The stored counts; DRF's own record (a list of timestamps, in a shared cache from before) counted
    by slice, so that an upgrade neither fails nor forgets a client's window."""
    if isinstance(stored, dict):
        return stored
    counts: dict[int, int] = {}
    for at in stored if isinstance(stored, list) else ():
        if isinstance(at, int | float):
            counts[int(at // width)] = counts.get(int(at // width), 0) + 1
    return counts


class ScopedRateThrottle(throttling.ScopedRateThrottle, SlicedRateThrottle):
    """DRF's per-view scope (`throttle_scope`) and rates (`DEFAULT_THROTTLE_RATES`), sliced."""


class UserRateThrottle(throttling.UserRateThrottle, SlicedRateThrottle):
    """DRF's per-user (else per-address) throttle, sliced."""
