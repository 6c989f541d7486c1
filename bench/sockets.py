"""Figures 5 and 6: opening sockets, and what idle sockets cost.

5. Sockets/s to open N sockets on existing conversations, and N sockets that create theirs (a new
   `conv_id` each), each counted when its ws.hello arrives (at most 50 handshakes in flight, under
   daphne's listen backlog), vs the bare consumer.
6. RSS of the daphne process with N idle sockets minus with none, per socket (bare consumer as the
   baseline), and the single-socket turn rate (engine delay 0) while they sit idle vs with none.
"""

from __future__ import annotations

import time
import uuid

from bench.report import Row
from bench.servers import (
    ClientSession,
    Daphne,
    Unavailable,
    bare_server,
    client,
    probe_shape,
    running,
    say,
    ws_url,
)

CONCURRENCY = 50


def _open(server: Daphne, convs: list[str], token: str) -> dict:
    spec = {"scenario": "open", "urls": [ws_url(server, c, token) for c in convs], "concurrency": CONCURRENCY}
    return client(spec, timeout=60 + len(convs) / 20)


def figure5(cfg, dbs) -> list[Row]:
    n = cfg.pick(1000, 200)
    rows = []
    for name in ("sqlite", "postgres"):
        try:
            backend = dbs.backend(name)
        except Unavailable as exc:
            rows.append(Row.not_run(5, f"sockets/s opening {n}", backend="PostgreSQL+Redis", note=str(exc)))
            continue
        url = dbs.copy(backend)
        convs = dbs.prepare(backend, url, conversations=n)["conversations"]
        token = backend.info["token"]
        full, bare = Daphne(f"f5-full-{name}", backend.server_env(url)), bare_server(f"f5-bare-{name}")
        # Per kind of socket: (rates, bare rates, errors) over the runs.
        kinds: dict[str, tuple[list[float], list[float], list[int]]] = {"existing": ([], [], []), "new": ([], [], [])}
        try:
            with running(full, bare):
                _open(full, convs[:20], token), _open(bare, convs[:20], token)  # warm-up
                for run in range(cfg.runs):
                    fresh = [str(uuid.uuid4()) for _ in convs]  # conversations no socket opened yet
                    for kind, ids, said in (("existing", convs, ""), ("new", fresh, ", creating their conversations")):
                        b = _open(bare, ids, token)
                        time.sleep(0.5)
                        f = _open(full, ids, token)
                        time.sleep(0.5)
                        for results, value in zip(kinds[kind], (f["rate"], b["rate"], f["errors"]), strict=True):
                            results.append(value)
                        say(
                            f"  {backend.label} run {run + 1}{said}: full {f['rate']:.0f}/s ({f['opened']} opened, "
                            f"{f['errors']} errors), bare {b['rate']:.0f}/s"
                        )
                        if f["errors"]:
                            say(f"    errors: {f['error_samples']}")
        finally:
            dbs.drop(url)
        for label, (values, baselines, errs) in (
            (f"sockets/s opening {n:,}", kinds["existing"]),
            (f"sockets/s opening {n:,} that create their conversation", kinds["new"]),
        ):
            rows.append(
                Row(
                    5,
                    label,
                    backend.label,
                    "/s",
                    values,
                    baseline=baselines,
                    baseline_label="bare",
                    ratio="base/value",
                    goal=">= 1,000/s",
                    checks=[("value", ">=", 1000)],
                    errors=sum(errs),
                )
            )
    return rows


def _single_rate(server: Daphne, conv: str, token: str, cfg) -> tuple[float, int]:
    """(turns/s on one socket, errors)."""
    duration, warmup, timeout = cfg.pick(5.0, 1.5), cfg.pick(1.0, 0.5), cfg.pick(60, 15)
    spec = {
        "scenario": "turns",
        "urls": [ws_url(server, conv, token)],
        "duration": duration,
        "warmup": warmup,
        "turn_timeout": timeout,
        "grace": 5,
    }
    result = client(spec, timeout=duration + warmup + timeout + 90)
    if result["errors"]:
        say(f"    single-socket turn errors: {result['error_samples']}")
    return result["rate"], result["errors"]


def _idle_rss(server: Daphne, convs: list[str], token: str, n: int, during=None) -> tuple[float, object, int]:
    """(KB per idle socket, what `during()` returned while they were open, sockets that failed)."""
    time.sleep(1.0)
    before = server.rss_kb()
    spec = {"scenario": "idle", "urls": [ws_url(server, c, token) for c in convs], "concurrency": CONCURRENCY}
    with ClientSession(spec) as session:
        opened = session.read(timeout=120 + n / 20)
        failed = n - opened["opened"]
        if failed:
            say(f"    {failed} of {n} idle sockets failed to open: {opened['error_samples']}")
        time.sleep(2.0)
        after = server.rss_kb()
        value = during() if during else None
        if not server.alive():
            raise RuntimeError(f"{server.name} died with {n} idle sockets:\n{server.log_tail()}")
        finished = session.finish(timeout=120)
    if finished.get("alive_at_end", opened["opened"]) != opened["opened"]:
        lost = opened["opened"] - finished["alive_at_end"]
        say(f"    {lost} idle sockets were closed by the server meanwhile")
        failed += lost
    return (after - before) / max(1, opened["opened"]), value, failed


def figure6(cfg, dbs) -> list[Row]:
    n = cfg.pick(5000, 500)
    backend = dbs.backend("sqlite")
    url = dbs.copy(backend)
    convs = dbs.prepare(backend, url, conversations=n + 2)["conversations"]
    token = backend.info["token"]
    idle, active = convs[:n], convs[n]
    per_socket, bare_per_socket, rate_idle, rate_none = [], [], [], []
    socket_errors = turn_errors = 0
    try:
        for run in range(cfg.runs):
            full = Daphne(f"f6-full-{run}", backend.server_env(url, CHAT_OFFLINE_DELAY_SECONDS="0"))
            bare = bare_server(f"f6-bare-{run}")
            with running(full, bare):
                probe_shape(full, convs[n + 1], token, paced=False)  # warm-up
                _open(full, convs[:50], token)
                _open(bare, convs[:50], token)
                none, errors_none = _single_rate(full, active, token, cfg)
                kb, (with_idle, errors_idle), failed = _idle_rss(
                    full, idle, token, n, lambda server=full: _single_rate(server, active, token, cfg)
                )
                bare_kb, _, _ = _idle_rss(bare, idle, token, n)
            per_socket.append(kb)
            bare_per_socket.append(bare_kb)
            rate_none.append(none)
            rate_idle.append(with_idle)
            socket_errors += failed
            turn_errors += errors_none + errors_idle
            say(
                f"  run {run + 1}: {kb:.1f} KB/idle socket (bare {bare_kb:.1f}); single-socket turns/s "
                f"{with_idle:.1f} with {n} idle vs {none:.1f} with none"
            )
    finally:
        dbs.drop(url)
    return [
        Row(
            6,
            f"RSS per idle socket ({n:,} sockets)",
            backend.label,
            "KB",
            per_socket,
            baseline=bare_per_socket,
            baseline_label="bare",
            ratio="value/base",
            goal="< 50 KB",
            checks=[("value", "<", 50)],
            errors=socket_errors,
        ),
        Row(
            6,
            f"turns/s, 1 socket, {n:,} idle sockets",
            backend.label,
            "turns/s",
            rate_idle,
            baseline=rate_none,
            baseline_label="0 idle",
            ratio="base/value",
            goal="within 10% (<= 1.1x)",
            checks=[("ratio", "<=", 1.1)],
            errors=turn_errors,
        ),
    ]
