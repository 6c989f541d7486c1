"""Figures 2 and 3: many concurrent streaming turns at the default pacing (CHAT_OFFLINE_DELAY_SECONDS=0.02).

Every socket (one conversation each) sends chat.send at the same moment. Per turn: the first-delta
latency (chat.send -> first llm.delta or llm.snapshot) and every gap between consecutive deltas of a
message; errors are failed/cancelled turns, error frames, timeouts and turns without a delta.
Baseline: the bare consumer replaying the real turn's frames at their real (quiet-server) times, on
the same number of sockets. Figure 3 also reports frames/s delivered by the one worker next to the
bare consumer's frame ceiling (every socket asking for a burst of delta-sized frames at once).
"""

from __future__ import annotations

from bench.report import Row
from bench.servers import Daphne, Unavailable, bare_server, client, delta_size, probe_shape, running, say, ws_url

PACING = "0.02"


def _streams(server: Daphne, convs: list[str], token: str, *, shape=None, timeout: float) -> dict:
    spec = {
        "scenario": "streams",
        "urls": [ws_url(server, c, token) for c in convs],
        "turn_timeout": timeout,
        "concurrency": 50,
    }
    if shape:
        spec["bare_shape"] = shape
    return client(spec, timeout=timeout + 60 + len(convs) / 20)


def _figure(fig: int, cfg, dbs, n: int, first_goal: dict[str, float], ceiling: bool) -> list[Row]:
    """`first_goal`: the first delta p99 goal in ms, by backend name."""
    rows: list[Row] = []
    bare = bare_server(f"f{fig}-bare")
    with running(bare):
        for name in ("sqlite", "postgres"):
            try:
                backend = dbs.backend(name)
            except Unavailable as exc:
                rows.append(Row.not_run(fig, f"{n} concurrent streams", backend="PostgreSQL+Redis", note=str(exc)))
                continue
            url = dbs.copy(backend)
            convs = dbs.prepare(backend, url, conversations=n + 1)["conversations"]
            token = backend.info["token"]
            full = Daphne(f"f{fig}-full-{name}", backend.server_env(url, CHAT_OFFLINE_DELAY_SECONDS=PACING))
            runs: list[dict] = []
            bases: list[dict] = []
            blasts: list[dict] = []
            try:
                with running(full):
                    shape = probe_shape(full, convs[n], token, paced=True)
                    for run in range(cfg.runs):
                        b = _streams(bare, convs[:n], token, shape=shape, timeout=cfg.pick(60, 20))
                        f = _streams(full, convs[:n], token, timeout=cfg.pick(60, 20))
                        runs.append(f)
                        bases.append(b)
                        line = (
                            f"  {backend.label} run {run + 1}: first delta p50/p99 {f['first_delta_ms_p50']}/"
                            f"{f['first_delta_ms_p99']} ms, gap p99 {f['gap_ms_p99']} ms, errors {f['errors']}, "
                            f"{f['frames_per_second'] or 0:.0f} frames/s | bare p99 {b['first_delta_ms_p99']} ms, "
                            f"gap p99 {b['gap_ms_p99']} ms"
                        )
                        if ceiling:
                            count = max(20, 20_000 // n)
                            spec = {
                                "scenario": "blast",
                                "urls": [ws_url(bare, c, token) for c in convs[:n]],
                                "count": count,
                                "size": delta_size(shape),
                                "concurrency": 50,
                            }
                            c = client(spec, timeout=180)
                            blasts.append(c)
                            line += f", bare ceiling {c['frames_per_second']:.0f} frames/s"
                        say(line)
                        if f["errors"]:
                            say(f"    errors: {f['error_samples']}")
            finally:
                dbs.drop(url)

            def pick(results: list[dict], key: str) -> list:
                return [r[key] for r in results]

            label, first_goal_ms = backend.label, first_goal[name]
            rows += [
                Row(
                    fig,
                    f"{n} streams: first delta p50",
                    label,
                    "ms",
                    pick(runs, "first_delta_ms_p50"),
                    baseline=pick(bases, "first_delta_ms_p50"),
                    baseline_label="bare",
                    ratio="value/base",
                ),
                Row(
                    fig,
                    f"{n} streams: first delta p99",
                    label,
                    "ms",
                    pick(runs, "first_delta_ms_p99"),
                    baseline=pick(bases, "first_delta_ms_p99"),
                    baseline_label="bare",
                    ratio="value/base",
                    goal=f"< {first_goal_ms:,.0f} ms",
                    checks=[("value", "<", first_goal_ms)],
                ),
                Row(
                    fig,
                    f"{n} streams: delta gap p99",
                    label,
                    "ms",
                    pick(runs, "gap_ms_p99"),
                    baseline=pick(bases, "gap_ms_p99"),
                    baseline_label="bare",
                    ratio="value/base",
                    goal="< 250 ms",
                    checks=[("value", "<", 250)],
                    note=f"max gap {max((r['gap_ms_max'] or 0) for r in runs):.0f} ms",
                ),
                Row(
                    fig,
                    f"{n} streams: errors",
                    label,
                    "",
                    pick(runs, "errors"),
                    baseline=pick(bases, "errors"),
                    baseline_label="bare",
                    goal="0",
                    checks=[("value", "<=", 0)],
                    note="; ".join(s for r in runs for s in r["error_samples"])[:200],
                ),
            ]
            if ceiling:
                rows.append(
                    Row(
                        fig,
                        f"{n} streams: frames/s per worker",
                        label,
                        "frames/s",
                        pick(runs, "frames_per_second"),
                        baseline=pick(blasts, "frames_per_second"),
                        baseline_label="bare ceiling",
                        ratio="base/value",
                        goal="(report)",
                        note="delivered during the paced streams; ceiling = bare burst to the same sockets",
                    )
                )
    return rows


def figure2(cfg, dbs) -> list[Row]:
    return _figure(2, cfg, dbs, cfg.pick(50, 10), {"sqlite": 500, "postgres": 500}, ceiling=False)


def figure3(cfg, dbs) -> list[Row]:
    # The pipeline issue's goal: < 1 s on SQLite, < 1.5 s on PostgreSQL + Redis (their round trips).
    return _figure(3, cfg, dbs, cfg.pick(500, 20), {"sqlite": 1000, "postgres": 1500}, ceiling=True)
