"""Benchmarks. Each prints figures and a ratio against a baseline measured in the same run.

Usage: `make bench` (or `.venv/bin/python bench/run.py`). Uses a throwaway SQLite database.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
_tmp = tempfile.mkdtemp(prefix="bench-")
os.environ["DATABASE_URL"] = f"sqlite:///{_tmp}/bench.sqlite3"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from chat.runtime.base import EngineDone, Message, TextDelta, ToolContext, TurnContext  # noqa: E402
from chat.runtime.composer import Runtime, RuntimeCache, compose  # noqa: E402
from chat.runtime.runner import TurnOutcome, run_turn  # noqa: E402
from chat.worker import make_engine  # noqa: E402
from profiles import services  # noqa: E402
from profiles.definitions import definitions  # noqa: E402
from profiles.selectors import profile_resolve  # noqa: E402


def timed(fn, repeat: int) -> float:
    """Median seconds per call over `repeat` calls (after one warm-up)."""
    fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench_runtime_cache() -> None:
    """Composing per message vs reusing the runtime cached by fingerprint."""
    resolution = profile_resolve(registry_slug="default", profile_slug="agent")
    tools = frozenset(t.name for t in definitions.tools.values())

    def build() -> Runtime:
        return compose(resolution, mount_tools=tools, defs=definitions, make_engine=make_engine)

    cache = RuntimeCache()
    uncached = timed(build, 2000)
    cached = timed(lambda: cache.get_or_build("chat", resolution, build), 2000)
    print("runtime cache (compose per message vs cached by fingerprint)")
    print(f"  build every time: {uncached * 1e6:8.1f} us/message")
    print(
        f"  cached          : {cached * 1e6:8.1f} us/message   ratio {uncached / cached:6.1f}x faster, builds={cache.builds}"
    )


def bench_resolution_queries() -> None:
    """Queries per resolution must not grow with the number of profiles or registries."""
    print("resolution cost vs registry size")
    base = None
    for count in (10, 200, 1000):
        existing = services.Profile.objects.filter(registry__slug="bench").count()
        if not services.Registry.objects.filter(slug="bench").exists():
            services.registry_create(slug="bench")
        for i in range(existing, count):
            services.profile_create(registry_slug="bench", slug=f"p{i:04d}", runtime={"system_prompt": f"p{i}"})
        with CaptureQueriesContext(connection) as queries:
            profile_resolve(registry_slug="bench", profile_slug="p0005")
        seconds = timed(lambda: profile_resolve(registry_slug="bench", profile_slug="p0005"), 300)
        base = base or seconds
        print(
            f"  {count:5d} profiles: {len(queries.captured_queries)} queries, {seconds * 1e6:7.1f} us "
            f"(ratio to 10 profiles {seconds / base:4.2f})"
        )


class TokenEngine:
    """Yields one token per delta, as a fast provider does (the worst case for frame counts)."""

    provider, model = "bench", "tokens"

    def __init__(self, tokens: int, gap: float) -> None:
        self.tokens, self.gap = tokens, gap

    async def stream(self, messages, tools):
        for i in range(self.tokens):
            if self.gap:
                await asyncio.sleep(self.gap)
            yield TextDelta(f"t{i} ")
        yield EngineDone("stop", {})


async def _stream(coalesce: float, tokens: int, gap: float, streams: int) -> tuple[int, float]:
    frames = 0

    async def emit(type, data):
        nonlocal frames
        frames += 1
        await asyncio.sleep(0)  # a send yields to the loop, as a socket write does

    async def one(n: int) -> None:
        runtime = Runtime(
            "r", "p", 1, "sha256:x", "", TokenEngine(tokens, gap), {"provider": "b", "model": "t"}, (), ()
        )
        ctx = TurnContext(str(n), str(n), "go", [Message("user", "go")], "", emit)
        tool_ctx = ToolContext(None, "", "chat", lambda perm: False, emit)
        await run_turn(runtime, ctx, TurnOutcome(), tool_ctx=tool_ctx, run_sync=None, coalesce_seconds=coalesce)

    start = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(streams)))
    return frames, time.perf_counter() - start


def bench_coalescing() -> None:
    """Frames sent per streamed reply: one per token vs coalesced every 30 ms."""
    tokens, gap, streams = 400, 0.001, 20
    raw_frames, raw_s = asyncio.run(_stream(0.0, tokens, gap, streams))
    co_frames, co_s = asyncio.run(_stream(0.03, tokens, gap, streams))
    print(f"delta coalescing ({streams} concurrent streams x {tokens} tokens, 1 ms apart)")
    print(f"  one frame per token: {raw_frames:6d} frames in {raw_s:5.2f}s")
    print(
        f"  coalesced (30 ms)  : {co_frames:6d} frames in {co_s:5.2f}s   ratio {raw_frames / co_frames:5.1f}x fewer frames"
    )


def main() -> None:
    call_command("migrate", verbosity=0)
    call_command("seed_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115
    bench_runtime_cache()
    bench_resolution_queries()
    bench_coalescing()


if __name__ == "__main__":
    main()
