"""The benchmark suite. `make bench` (full) / `make bench-quick` (`--quick`: small sizes, 1 run).

Every figure runs against real daphne processes (the project's ASGI app, and a bare Channels consumer
as the baseline) on throwaway databases (a SQLite file; a PostgreSQL database created and dropped
here, with Redis as the channel layer), driven by a separate load-client process with real websocket
/ HTTP clients. Each figure: median of the runs with min and max, the baseline measured in the same
run, the ratio and the goal. Results: a table on stdout, bench/results/latest.json and latest.md.

A benchmark that crashes is reported and the others still run; the exit status is non-zero only
then (missed goals never fail the run). PostgreSQL/Redis missing -> those rows are "not run".

    .venv/bin/python bench/run.py [--quick] [--only 1,5,7] [--runs N]

Environment: BENCH_POSTGRES_URL (admin connection used to create/drop databases, default
postgres://postgres@127.0.0.1:5432/postgres), BENCH_REDIS_URL (default redis://127.0.0.1:6379/3),
BENCH_DAPHNE_ARGS (extra daphne flags). Other settings (CONN_MAX_AGE, CHAT_*...) pass through to
the servers; the figures force only their own conditions (engine delay, rate limit, hosts).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import gateway, micro, profiles_api, sockets, steady, streaming, throughput, turn_costs  # noqa: E402
from bench.report import Row, meta, table, write  # noqa: E402
from bench.servers import LOGS, RESULTS, Config, Databases, raise_nofile  # noqa: E402

FIGURES = [
    ("1", "throughput, engine delay 0: full turns vs bare consumer (1 and 20 sockets)", throughput.figure1),
    ("5", "opening sockets", sockets.figure5),
    ("7", "profile list API vs plain JsonResponse", profiles_api.figure7),
    ("8", "turn costs in-process (writes, stored bytes, conversation growth)", turn_costs.figure8),
    ("2", "concurrent streaming turns at default pacing (50)", streaming.figure2),
    ("3", "concurrent streaming turns at default pacing (500) + frame ceiling", streaming.figure3),
    ("4", "turns/s with 100 conversations: 1 vs 2 workers (PostgreSQL+Redis)", throughput.figure4),
    ("6", "idle sockets: memory and turn rate", sockets.figure6),
    ("m", "micro-benchmarks (runtime cache, resolution, coalescing)", micro.figure_micro),
    ("g", "OpenAI-compatible gateway: added latency vs the upstream direct", gateway.figure_gateway),
    ("s", "steady-state streaming: staggered arrivals, ~500 long turns at once", steady.figure_steady),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 run per figure (make test)")
    parser.add_argument("--only", default="", help="comma-separated figures, e.g. 1,5,7,8,m,g,s")
    parser.add_argument("--runs", type=int, default=0, help="runs per figure (default 3, quick 1)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    raise_nofile()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop servers through the finally blocks
    cfg = Config(quick=args.quick, runs=args.runs or (1 if args.quick else 3))
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    selected = [f for f in FIGURES if not only or f[0] in only]
    order = {"1": 1, "2": 2, "3": 3, "4": 4, "5": 5, "6": 6, "7": 7, "8": 8, "m": 9, "g": 10, "s": 11}

    started = time.monotonic()
    shutil.rmtree(LOGS, ignore_errors=True)  # daphne logs of this run only (bench/results/logs/)
    rows: list[Row] = []
    crashed: list[str] = []
    dbs = Databases()
    print(f"benchmarks ({'quick' if cfg.quick else 'full'} mode, {cfg.runs} run(s) per figure)")
    try:
        for key, title, run in selected:
            print(f"\n== figure {key}: {title}")
            t = time.monotonic()
            try:
                rows += run(cfg, dbs)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                traceback.print_exc()
                crashed.append(key)
                rows.append(Row.crashed(key, title, f"{type(exc).__name__}: {exc}"[:300]))
            print(f"   ({time.monotonic() - t:.0f} s)")
    finally:
        dbs.cleanup()
    rows.sort(key=lambda r: order.get(str(r.figure), 99))
    seconds = time.monotonic() - started
    info = meta(cfg.quick, cfg.runs, seconds)
    print("\n" + table(rows))
    write(rows, info, RESULTS)
    missed = [r for r in rows if r.met is False]
    print(
        f"\n{len(rows)} rows in {seconds:.0f} s; goals missed: {len(missed)}; crashed: {', '.join(crashed) or 'none'}"
    )
    print(f"written: {RESULTS / 'latest.json'} and {RESULTS / 'latest.md'}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
