"""Figure s: steady-state streaming. Turns arrive at a fixed rate, spread so that ~500 stream at once,
each ~20 s long (quick mode: ~50 streams of ~4 s), instead of all at once as in figures 2 and 3.

The offline engine answers a prompt of 60 one-letter words with its longest answer (it quotes the
first 80 characters of the prompt: 19 chunks today, one llm.delta each), one chunk every
CHAT_OFFLINE_DELAY_SECONDS: the pace is set to the turn length / the gaps between chunks (~1.1 s; 0.22 s
in quick mode), and set again from the chunks a probe turn counted if its length is off by more than
15%. The client (scenario `steady`, a pool of sockets, one conversation each) sends a turn every
1/rate s with rate = streams / the probe turn's length, ramps up for one turn length, then measures for
a window (20 s; 3 s quick): the first delta (chat.send -> first llm.delta) of every turn sent in it,
every delta gap arriving in it, failed turns, and arrivals that found no free socket. The turns still
running after the window are cancelled (the bare consumer's sockets are closed).

Baseline: the bare consumer replaying the probe turn's frames at their real times (same sizes, same
pace), driven the same way in the same run. The engine's answers are short, so a 20 s turn has deltas
about a second apart: the gap goal is relative to that pace (no delta more than 250 ms later than the
engine made it), the first-delta goal is absolute. SQLite + in-memory layer; PostgreSQL + Redis too in
full mode when available.
"""

from __future__ import annotations

from bench.report import Row
from bench.servers import Daphne, Unavailable, bare_server, client, say, ws_url

PROMPT = "a " * 60  # quoted up to 80 characters: the offline engine's longest answer
FIRST_GOAL_MS = 250
LATE_GOAL_MS = 250  # a delta at most this much later than the engine's pace
GUESS_GAPS = 18  # gaps between the answer's deltas (19 chunks today); the probe corrects it


def _probe(server: Daphne, conv_id: str, token: str) -> tuple[dict, float, int]:
    """The paced turn's frames for the bare consumer (after a warm-up turn cancelled at its first
    delta), its length in seconds and its number of deltas."""
    spec = {
        "scenario": "probe",
        "urls": [ws_url(server, conv_id, token)],
        "turns": 1,
        "prompt": PROMPT,
        "warm_cancel": True,
        "turn_timeout": 120,
    }
    result = client(spec, timeout=240)
    if result["errors"]:
        raise RuntimeError(f"probe turn failed on {server.name}: {result['errors']}")
    frames = result["shapes"][-1]
    deltas = sum(1 for kind, _, _ in frames if kind == "llm.delta")
    length = result["seconds"][-1]
    say(f"  real turn: {len(frames)} frames ({deltas} llm.delta), {length:.1f} s")
    return {"frames": frames, "paced": True, "hello_bytes": result["hello_bytes"]}, length, deltas


def _steady(server: Daphne, convs: list[str], token: str, *, rate: float, ramp: float, window: float, **extra) -> dict:
    spec = {
        "scenario": "steady",
        "urls": [ws_url(server, c, token) for c in convs],
        "prompt": PROMPT,
        "rate": rate,
        "ramp": ramp,
        "window": window,
        "turn_timeout": 120,
        "concurrency": 50,
        "settle": 0.2,
        **extra,
    }
    return client(spec, timeout=ramp + window + 240 + len(convs) / 20)


def figure_steady(cfg, dbs) -> list[Row]:
    streams, length, window = cfg.pick(500, 50), cfg.pick(20.0, 4.0), cfg.pick(20.0, 3.0)
    pool = int(streams * 1.3) + 5  # turns that get longer under load need more sockets at once
    rows: list[Row] = []
    bare = bare_server("s-bare").launch()  # starts while the database copy is prepared
    try:
        for name in ("sqlite",) if cfg.quick else ("sqlite", "postgres"):
            try:
                backend = dbs.backend(name)
            except Unavailable as exc:
                rows.append(Row.not_run("s", f"{streams} steady streams", backend="PostgreSQL+Redis", note=str(exc)))
                continue
            rows += _backend(cfg, dbs, backend, bare, streams=streams, length=length, window=window, pool=pool)
    finally:
        bare.stop()
    return rows


def _backend(cfg, dbs, backend, bare: Daphne, *, streams: int, length: float, window: float, pool: int) -> list[Row]:
    url = dbs.copy(backend)
    token = backend.info["token"]
    # The pace: guessed from the answer's usual chunk count; set from the chunks the probe counted if
    # its turn is off by more than 15% (a second server).
    pace = length / GUESS_GAPS
    full = Daphne(f"s-full-{backend.kind}", backend.server_env(url, CHAT_OFFLINE_DELAY_SECONDS=f"{pace:.4f}")).launch()
    runs: list[dict] = []
    bases: list[dict] = []
    try:
        convs = dbs.prepare(backend, url, conversations=pool + 1)["conversations"]
        full.wait_ready()
        shape, turn_seconds, deltas = _probe(full, convs[pool], token)
        if abs(turn_seconds - length) > 0.15 * length and deltas > 1:
            full.stop()
            pace = length / (deltas - 1)
            env = backend.server_env(url, CHAT_OFFLINE_DELAY_SECONDS=f"{pace:.4f}")
            full = Daphne(f"s-full-{backend.kind}", env).start()
            shape, turn_seconds, deltas = _probe(full, convs[pool], token)
        bare.wait_ready()
        rate = streams / turn_seconds
        timing = {"rate": rate, "ramp": turn_seconds, "window": window}
        say(f"  {rate:.1f} turns/s for {timing['ramp']:.1f} s ramp + {window:.0f} s window, {pool} sockets")
        for run in range(cfg.runs):
            b = _steady(bare, convs[:pool], token, bare_shape=shape, cancel=False, **timing)
            f = _steady(full, convs[:pool], token, cancel=True, **timing)
            bases.append(b)
            runs.append(f)
            say(
                f"  {backend.label} run {run + 1}: {f['streaming_mean']:.0f} streaming (max "
                f"{f['streaming_max']}), first delta p50/p99 {f['first_delta_ms_p50']}/"
                f"{f['first_delta_ms_p99']} ms, gap p50/p99 {f['gap_ms_p50']}/{f['gap_ms_p99']} ms, "
                f"errors {f['errors']}, {f['frames_per_second']:.0f} frames/s, turn "
                f"{f['turn_s_p50'] or 0:.1f} s | bare {b['streaming_mean']:.0f} streaming, first delta "
                f"p99 {b['first_delta_ms_p99']} ms, gap p99 {b['gap_ms_p99']} ms, errors {b['errors']}"
            )
            if f["errors"]:
                say(f"    errors: {f['error_samples']}")
    finally:
        full.stop()
        dbs.drop(url)
    return _rows(backend.label, streams, pace, runs, bases)


def _rows(label: str, streams: int, pace: float, runs: list[dict], bases: list[dict]) -> list[Row]:
    def pick(results: list[dict], key: str) -> list:
        return [r[key] for r in results]

    pace_ms = pace * 1000
    what = f"{streams} steady streams"
    first_p50 = ", ".join(f"{v:.0f}" for v in pick(runs, "first_delta_ms_p50") if v is not None)
    return [
        Row(
            "s",
            f"{what}: streaming at once (mean in the window)",
            label,
            "turns",
            pick(runs, "streaming_mean"),
            baseline=pick(bases, "streaming_mean"),
            baseline_label="bare",
            ratio="value/base",
            goal="(report)",
            note=f"turn length p50 {', '.join(f'{v or 0:.1f}' for v in pick(runs, 'turn_s_p50'))} s; "
            f"{', '.join(f'{v:.0f}' for v in pick(runs, 'frames_per_second'))} frames/s",
        ),
        Row(
            "s",
            f"{what}: first delta p99",
            label,
            "ms",
            pick(runs, "first_delta_ms_p99"),
            baseline=pick(bases, "first_delta_ms_p99"),
            baseline_label="bare",
            ratio="value/base",
            goal=f"< {FIRST_GOAL_MS} ms",
            checks=[("value", "<", FIRST_GOAL_MS)],
            note=f"p50 {first_p50} ms",
        ),
        Row(
            "s",
            f"{what}: delta gap p99 (engine pace {pace_ms:.0f} ms)",
            label,
            "ms",
            pick(runs, "gap_ms_p99"),
            baseline=pick(bases, "gap_ms_p99"),
            baseline_label="bare",
            ratio="value/base",
            goal=f"< pace + {LATE_GOAL_MS} ms",
            checks=[("value", "<", pace_ms + LATE_GOAL_MS)],
            note=f"max gap {max((r['gap_ms_max'] or 0) for r in runs):.0f} ms",
        ),
        Row(
            "s",
            f"{what}: errors",
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
