"""Figure 7: the profile list API at 1,000 profiles vs a plain Django JsonResponse of the same rows.

Both are served by the same daphne process (bench/asgi_with_baseline.py adds the plain route) and
requested for a fixed window by a few concurrent HTTP clients (httpx, one process), on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

from bench.report import Row
from bench.servers import Daphne, Unavailable, client, running, say

CLIENTS = 4


def _get(server: Daphne, path: str, cfg, headers: dict | None = None) -> dict:
    duration = cfg.pick(5.0, 2.0)
    spec = {
        "scenario": "http",
        "url": server.url + path,
        "headers": headers or {},
        "concurrency": CLIENTS,
        "duration": duration,
        "warmup": cfg.pick(1.0, 0.5),
    }
    return client(spec, timeout=duration + 90)


def figure7(cfg, dbs) -> list[Row]:
    count = cfg.pick(1000, 100)
    rows = []
    for name in ("sqlite", "postgres"):
        try:
            backend = dbs.backend(name)
        except Unavailable as exc:
            rows.append(Row.not_run(7, f"profile list, {count} profiles", backend="PostgreSQL", note=str(exc)))
            continue
        url = dbs.copy(backend)
        total = dbs.prepare(backend, url, profiles=count)["profiles"]
        api_path = backend.info["profile_list_path"]
        auth = {"Authorization": f"Token {backend.info['token']}"}
        server = Daphne(f"f7-{name}", backend.server_env(url), app="bench.asgi_with_baseline:application")
        api, plain, errors, note = [], [], 0, ""
        try:
            with running(server):
                for run in range(cfg.runs):
                    p = _get(server, "/bench/plain-profiles?registry=default", cfg)
                    a = _get(server, api_path, cfg, auth)
                    if a["items"] != p["items"]:
                        note = f"API returned {a['items']} items, plain {p['items']}"
                    plain.append(p["rate"])
                    api.append(a["rate"])
                    errors += a["errors"]
                    say(
                        f"  {backend.label.split('+')[0]} run {run + 1}: API {a['rate']:.1f} req/s "
                        f"({a['items']} items, {a['bytes']:,} bytes, p50 {a['latency_ms_p50']} ms), plain "
                        f"{p['rate']:.1f} req/s ({p['bytes']:,} bytes)"
                    )
        finally:
            dbs.drop(url)
        rows.append(
            Row(
                7,
                f"GET {api_path}, {total:,} profiles",
                backend.label.split("+")[0],
                "req/s",
                api,
                baseline=plain,
                baseline_label="plain JsonResponse",
                ratio="base/value",
                goal="plain/API <= 1.5x",
                checks=[("ratio", "<=", 1.5)],
                note=note,
                errors=errors,
            )
        )
    return rows
