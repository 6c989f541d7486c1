"""Figure g: what the OpenAI-compatible gateway adds to a chat completion's latency.

One upstream, the fake OpenAI-compatible provider (bench/fake_llm.py `serve`, an asyncio process: no
delay, a small answer `n=5 bytes=200`), and one daphne worker of the project (SQLite + in-memory layer)
whose profile `bench-openai` runs the `openai` engine against that upstream. A separate client process
sends the same request with the official `openai` SDK straight to the upstream (the baseline) and to
`POST /v1/chat/completions` of the worker (Bearer token of the bench user, model `bench-openai`; each
completion is a turn of a new conversation), alternating between the two:

  - non-streamed (total time) and streamed (time to the last chunk, and to the first content chunk);
  - sequential (200 requests, 50 in quick mode) and 50 at a time (rounds of 50: 10 non-streamed and 20
    streamed, 2 and 2 in quick mode).

Rows: the added latency at p50 and p99 (gateway minus direct at that percentile; the direct figure is
the baseline), and how many of the concurrent streamed completions (1,000; 100 in quick mode) waited
more than 500 ms for their first content chunk. Errors: non-2xx answers, error events, answers other
than the upstream's.
"""

from __future__ import annotations

from bench.report import Row
from bench.servers import Daphne, Upstream, client, say

PROMPT = "n=5 bytes=200"
WIDTH = 50
SLOW_FIRST_MS = 500
GOALS = {"p50": 5.0, "p99": 20.0}  # ms added by the gateway


def figure_gateway(cfg, dbs) -> list[Row]:
    backend = dbs.backend("sqlite")
    url = dbs.copy(backend)
    token = backend.info["token"]
    sequential = cfg.pick(200, 50)
    rounds = {"nonstream": cfg.pick(10, 2), "stream": cfg.pick(20, 2)}
    upstream = Upstream().start()
    server: Daphne | None = None
    results: list[dict] = []
    try:
        env = backend.server_env(
            url,
            CHAT_OFFLINE_DELAY_SECONDS="0",
            CHAT_REST_TURN_RATE="1000000/min",  # every completion is a REST turn (default 60/min per user)
            OPENAI_BASE_URL=upstream.base_url,
            OPENAI_API_KEY="sk-bench-local",
        )
        server = Daphne("g-gateway", env).launch()  # starts while the database copy is prepared
        model = dbs.prepare(backend, url, openai_profile=True)["openai_profile"]
        server.wait_ready()
        spec = {
            "scenario": "openai",
            "targets": {
                "direct": {"base_url": upstream.base_url, "api_key": "sk-bench-local"},
                "gateway": {"base_url": f"{server.url}/v1", "api_key": token},
            },
            "model": model,
            "prompt": PROMPT,
            "sequential": sequential,
            "rounds": rounds,
            "width": WIDTH,
            "slow_first": SLOW_FIRST_MS / 1000,
            "timeout": 60,
        }
        requests = 2 * (2 * sequential + WIDTH * sum(rounds.values()))
        for run in range(cfg.runs):
            result = client(spec, timeout=120 + requests * 0.2)
            results.append(result)
            for key in VARIANTS:
                d, g = result[key]["direct"], result[key]["gateway"]
                line = (
                    f"  run {run + 1} {key}: direct p50/p99 {d['total_ms_p50']}/{d['total_ms_p99']} ms, "
                    f"gateway {g['total_ms_p50']}/{g['total_ms_p99']} ms"
                )
                if g["first_ms_p50"] is not None:
                    line += (
                        f"; first chunk direct {d['first_ms_p50']}/{d['first_ms_p99']}, "
                        f"gateway {g['first_ms_p50']}/{g['first_ms_p99']} ms"
                    )
                line += f"; errors {g['errors']}" + (f" {g['error_samples']}" if g["errors"] else "")
                say(line)
                if d["errors"]:
                    say(f"    direct errors: {d['error_samples']}")
    finally:
        if server is not None:
            server.stop()
        upstream.stop()
        dbs.drop(url)
    return _rows(results, backend.label, rounds["stream"] * WIDTH)


VARIANTS = ("nonstream/sequential", "stream/sequential", "nonstream/concurrent", "stream/concurrent")
MEASURES = {  # variant kind -> (result key prefix, what is timed)
    "nonstream": [("total", "")],
    "stream": [("total", ", to the last chunk"), ("first", ", to the first content chunk")],
}


def _rows(results: list[dict], label: str, streamed: int) -> list[Row]:
    rows: list[Row] = []
    for key in VARIANTS:
        kind, mode = key.split("/")
        what = ("streamed" if kind == "stream" else "non-streamed") + (
            ", sequential" if mode == "sequential" else f", {WIDTH} concurrent"
        )
        errors = sum(r[key]["gateway"]["errors"] for r in results)
        samples = "; ".join(s for r in results for s in r[key]["gateway"]["error_samples"])[:200]
        for measure, timed in MEASURES[kind]:
            for q, goal in GOALS.items():
                field = f"{measure}_ms_{q}"
                direct = [r[key]["direct"][field] for r in results]
                gateway = [r[key]["gateway"][field] for r in results]
                added = [
                    None if g is None or d is None else round(g - d, 2) for g, d in zip(gateway, direct, strict=True)
                ]
                shown = ", ".join("—" if g is None else f"{g:.1f}" for g in gateway)
                rows.append(
                    Row(
                        "g",
                        f"gateway added latency {q}, {what}{timed}",
                        label,
                        "ms",
                        added,
                        baseline=direct,
                        baseline_label="direct",
                        goal=f"≤ {goal:g} ms",
                        checks=[("value", "<=", goal)],
                        note="; ".join(x for x in (f"gateway {q} {shown} ms", samples) if x),
                        errors=errors,
                    )
                )
    key = "stream/concurrent"
    rows.append(
        Row(
            "g",
            f"streamed completions waiting > {SLOW_FIRST_MS} ms for the first chunk ({WIDTH} concurrent)",
            label,
            f"of {streamed:,}",
            [r[key]["gateway"]["slow_first"] for r in results],
            baseline=[r[key]["direct"]["slow_first"] for r in results],
            baseline_label="direct",
            goal="0",
            checks=[("value", "<=", 0)],
            note="first content chunk; a failed stream counts as waiting",
            errors=sum(r[key]["gateway"]["errors"] for r in results),
        )
    )
    return rows
