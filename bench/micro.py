"""Micro-benchmarks of the runtime (the original `make bench`), in-process against a throwaway SQLite copy:
the runtime cache vs composing per message, resolution queries/time vs registry size, and frames sent
with delta coalescing vs one frame per token. Run as a subprocess; prints JSON."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import Row  # noqa: E402
from bench.servers import base_env, run_json  # noqa: E402


def figure_micro(cfg, dbs) -> list[Row]:
    backend = dbs.backend("sqlite")
    url = dbs.copy(backend)
    try:
        spec = {"quick": cfg.quick, "runs": cfg.runs}
        result = run_json(["bench/micro.py"], env=base_env(DATABASE_URL=url), timeout=600, stdin=json.dumps(spec))
    finally:
        dbs.drop(url)
    rows = []
    cache = result["cache"]
    rows.append(
        Row(
            "m",
            "runtime: cached by fingerprint",
            "in-process",
            "us/msg",
            cache["cached_us"],
            baseline=cache["build_us"],
            baseline_label="compose per message",
            ratio="base/value",
        )
    )
    res = result["resolution"]
    counts = sorted(res, key=int)
    first = res[counts[0]]
    for count in counts[1:]:
        point = res[count]
        rows.append(
            Row(
                "m",
                f"resolution queries, {int(count):,} profiles",
                "SQLite",
                "queries",
                point["queries"],
                baseline=first["queries"],
                baseline_label=f"{counts[0]} profiles",
                ratio="value/base",
                goal="constant",
                checks=[("ratio", "<=", 1.0)],
            )
        )
        rows.append(
            Row(
                "m",
                f"resolution time, {int(count):,} profiles",
                "SQLite",
                "us",
                point["us"],
                baseline=first["us"],
                baseline_label=f"{counts[0]} profiles",
                ratio="value/base",
            )
        )
    co = result["coalescing"]
    rows.append(
        Row(
            "m",
            f"frames, {co['streams']} streams x {co['tokens']} tokens, coalesced 30 ms",
            "in-process",
            "frames",
            co["coalesced"],
            baseline=co["raw"],
            baseline_label="one per token",
            ratio="base/value",
        )
    )
    return rows


# --------------------------------------------------------------------------- Django side (subprocess)


def timed(fn, repeat: int) -> float:
    """Median seconds per call over `repeat` calls (after one warm-up)."""
    fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _main(spec: dict[str, Any]) -> dict[str, Any]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chat.composition import make_engine
    from chat.runtime.base import EngineDone, Message, TextDelta, ToolContext, TurnContext
    from chat.runtime.composer import Runtime, RuntimeCache, compose
    from chat.runtime.runner import TurnOutcome, run_turn
    from profiles import services
    from profiles.definitions import definitions
    from profiles.models import Profile
    from profiles.selectors import profile_resolve

    quick, runs = spec["quick"], spec["runs"]
    repeat = 300 if quick else 2000
    out: dict[str, Any] = {}

    # Runtime cache: composing per message vs reusing the runtime cached by fingerprint.
    resolution = profile_resolve(registry_slug="default", profile_slug="agent")
    tools = frozenset(t.name for t in definitions.tools.values())

    def build() -> Runtime:
        return compose(resolution, mount_tools=tools, defs=definitions, make_engine=make_engine)

    cache = RuntimeCache()
    out["cache"] = {"build_us": [], "cached_us": []}
    for _ in range(runs):
        out["cache"]["build_us"].append(timed(build, repeat) * 1e6)
        out["cache"]["cached_us"].append(timed(lambda: cache.get_or_build("chat", resolution, build), repeat) * 1e6)

    # Resolution cost vs registry size: queries must not grow with the number of profiles.
    out["resolution"] = {}
    services.registry_create(slug="bench")
    for count in (10, 100) if quick else (10, 200, 1000):
        existing = Profile.objects.filter(registry__slug="bench").count()
        for i in range(existing, count):
            services.profile_create(registry_slug="bench", slug=f"p{i:04d}", runtime={"system_prompt": f"p{i}"})
        with CaptureQueriesContext(connection) as queries:
            profile_resolve(registry_slug="bench", profile_slug="p0005")
        us = [
            timed(lambda: profile_resolve(registry_slug="bench", profile_slug="p0005"), repeat // 5) * 1e6
            for _ in range(runs)
        ]
        out["resolution"][str(count)] = {"queries": [len(queries.captured_queries)] * runs, "us": us}

    # Delta coalescing: frames per streamed reply, one per token vs coalesced every 30 ms.
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

    async def stream(coalesce: float, tokens: int, gap: float, streams: int) -> int:
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

        await asyncio.gather(*(one(n) for n in range(streams)))
        return frames

    tokens, gap, streams = (200 if quick else 400), 0.001, 20
    out["coalescing"] = {"tokens": tokens, "streams": streams, "raw": [], "coalesced": []}
    for _ in range(runs):
        out["coalescing"]["raw"].append(asyncio.run(stream(0.0, tokens, gap, streams)))
        out["coalescing"]["coalesced"].append(asyncio.run(stream(0.03, tokens, gap, streams)))
    return out


if __name__ == "__main__":
    print(json.dumps(_main(json.loads(sys.stdin.read() or "{}"))))
