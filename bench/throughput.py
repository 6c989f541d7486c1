"""Figures 1 and 4: full websocket turns per second.

1. Engine delay 0, SQLite + in-memory layer: the real server vs the bare consumer replaying the same
   frames, on 1 socket and on 20 sockets (sequential turns per socket).
4. PostgreSQL + Redis, 100 conversations (one socket each): 1 daphne worker vs 2 workers (sockets
   spread over both ports).
"""

from __future__ import annotations

from bench.report import Row
from bench.servers import Daphne, Unavailable, bare_server, client, probe_shape, running, say, ws_url


def _turns(server: Daphne, convs: list[str], token: str, cfg, *, shape=None, servers=None) -> dict:
    """Sequential turns on every socket; `cpu_ms_per_turn`: the server process's CPU time over every
    turn it completed meanwhile (the load client runs in its own process)."""
    servers = servers or [server]
    cpu_before = [s.cpu_seconds() for s in servers]
    urls = [ws_url(servers[i % len(servers)], conv, token) for i, conv in enumerate(convs)]
    duration = cfg.pick(10.0, 3.0) if len(urls) > 20 else cfg.pick(5.0, 1.5)
    warmup, timeout = cfg.pick(1.5, 0.5), cfg.pick(60, 15)
    spec = {
        "scenario": "turns",
        "urls": urls,
        "duration": duration,
        "warmup": warmup,
        "turn_timeout": timeout,
        "grace": 5,
    }
    if shape:
        spec["bare_shape"] = shape
    result = client(spec, timeout=duration + warmup + timeout + 90)
    cpu = sum(s.cpu_seconds() for s in servers) - sum(cpu_before)
    result["cpu_ms_per_turn"] = cpu * 1000 / result["all_turns"] if result["all_turns"] else None
    return result


def figure1(cfg, dbs) -> list[Row]:
    backend = dbs.backend("sqlite")
    url = dbs.copy(backend)
    convs = dbs.prepare(backend, url, conversations=22)["conversations"]
    token = backend.info["token"]
    full = Daphne("f1-full", backend.server_env(url, CHAT_OFFLINE_DELAY_SECONDS="0"))
    bare = bare_server("f1-bare")
    rows = []
    try:
        with running(full, bare):
            shape = probe_shape(full, convs[0], token, paced=False)
            for label, group in (("1 socket", convs[1:2]), ("20 sockets", convs[2:22])):
                full_rates, bare_rates, full_cpu, bare_cpu, errors = [], [], [], [], 0
                for run in range(cfg.runs):
                    b = _turns(bare, group, token, cfg, shape=shape)
                    f = _turns(full, group, token, cfg)
                    bare_rates.append(b["rate"])
                    full_rates.append(f["rate"])
                    bare_cpu.append(b["cpu_ms_per_turn"])
                    full_cpu.append(f["cpu_ms_per_turn"])
                    errors += f["errors"]
                    say(
                        f"  {label} run {run + 1}: full {f['rate']:.1f} turns/s (p50 turn {f['turn_ms_p50']} ms, "
                        f"errors {f['errors']}, CPU {f['cpu_ms_per_turn']:.2f} ms/turn), bare {b['rate']:.1f} turns/s "
                        f"(CPU {b['cpu_ms_per_turn']:.2f} ms/turn)"
                    )
                    if f["errors"]:
                        say(f"    errors: {f['error_samples']}")
                rows.append(
                    Row(
                        1,
                        f"turns/s, delay 0, {label}",
                        backend.label,
                        "turns/s",
                        full_rates,
                        baseline=bare_rates,
                        baseline_label="bare",
                        ratio="base/value",
                        goal="bare/full <= 5x",
                        checks=[("ratio", "<=", 5)],
                        errors=errors,
                    )
                )
                rows.append(
                    Row(
                        1,
                        f"server CPU ms/turn, delay 0, {label}",
                        backend.label,
                        "ms",
                        full_cpu,
                        baseline=bare_cpu,
                        baseline_label="bare",
                        ratio="value/base",
                        goal="≤ 4 ms",
                        checks=[("value", "<=", 4)],
                        note="daphne process, every thread, warm-up turns included",
                    )
                )
    finally:
        dbs.drop(url)
    return rows


def figure4(cfg, dbs) -> list[Row]:
    try:
        backend = dbs.backend("postgres")
    except Unavailable as exc:
        return [Row.not_run(4, "turns/s, 100 conversations, 2 workers vs 1", backend="PostgreSQL+Redis", note=str(exc))]
    url = dbs.copy(backend)
    convs = dbs.prepare(backend, url, conversations=101)["conversations"]
    token = backend.info["token"]
    env = backend.server_env(url, CHAT_OFFLINE_DELAY_SECONDS="0")
    a, b = Daphne("f4-worker-a", env), Daphne("f4-worker-b", env)
    one, two, errors = [], [], 0
    try:
        with running(a, b):
            probe_shape(a, convs[100], token, paced=False)  # warm-up of worker a
            probe_shape(b, convs[100], token, paced=False)  # and b
            for run in range(cfg.runs):
                r1 = _turns(a, convs[:100], token, cfg)
                r2 = _turns(a, convs[:100], token, cfg, servers=[a, b])
                one.append(r1["rate"])
                two.append(r2["rate"])
                errors += r1["errors"] + r2["errors"]
                say(
                    f"  run {run + 1}: 1 worker {r1['rate']:.1f} turns/s, 2 workers {r2['rate']:.1f} turns/s "
                    f"(errors {r1['errors']}/{r2['errors']})"
                )
                for r in (r1, r2):
                    if r["errors"]:
                        say(f"    errors: {r['error_samples']}")
    finally:
        dbs.drop(url)
    return [
        Row(
            4,
            "turns/s, 100 conversations, 2 workers",
            backend.label,
            "turns/s",
            two,
            baseline=one,
            baseline_label="1 worker",
            ratio="value/base",
            goal=">= 1.7x and >= 38/s",
            checks=[("ratio", ">=", 1.7), ("value", ">=", 38)],
            errors=errors,
        )
    ]
