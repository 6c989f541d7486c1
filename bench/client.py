"""The load client: many real websocket clients (the `websockets` library) or HTTP clients in one
asyncio process, separate from the orchestrator and from the servers.

Reads one JSON spec line on stdin and prints one JSON result line on stdout. Scenarios:

    probe    one socket, a few turns; every frame's type, size and arrival time (the turn's shape)
    turns    sequential turns on each socket for a fixed window: turns/s
    streams  one turn on every socket, all sent at once: first-delta latency, delta gaps, frames/s
    open     open N sockets (each until its ws.hello): sockets/s
    idle     open N sockets, report, hold them until stdin closes, then close them
    blast    (bare consumer) every socket asks for K frames at once: the frame ceiling
    http     GET one URL from C concurrent clients for a fixed window: requests/s

Protocol (chat websocket): every server frame is JSON {"type","id","seq","conv_id","ts_ms","data"};
first `ws.hello`; the client sends {"type": "chat.send", "prompt": ...}; a turn ends with
turn.completed / turn.failed / turn.cancelled (or an `error` frame refusing it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect

FINISHED = {"turn.completed", "turn.failed", "turn.cancelled"}
FAILED = {"turn.failed", "turn.cancelled"}
DELTAS = {"llm.delta", "llm.snapshot"}
now = time.perf_counter


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def pct(values: list[float], q: float) -> float | None:
    """Percentile with linear interpolation (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# --------------------------------------------------------------------------- websocket basics


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"http://{parts.netloc}"


async def open_socket(url: str, timeout: float) -> tuple[ClientConnection, int]:
    """Connect with the page's Origin and wait for ws.hello; returns the socket and the hello size."""
    async with asyncio.timeout(timeout):
        ws = await connect(
            url,
            additional_headers={"Origin": origin_of(url)},
            open_timeout=None,
            ping_interval=None,
            max_size=None,
            compression=None,
            close_timeout=2,
        )
        try:
            raw = await ws.recv()
            frame = json.loads(raw)
            if frame.get("type") != "ws.hello":
                raise RuntimeError(f"first frame is not ws.hello: {raw[:300]}")
        except BaseException:
            with contextlib.suppress(Exception):
                await ws.close()
            raise
    return ws, len(raw)


async def open_all(urls: list[str], *, concurrency: int, timeout: float) -> tuple[list, list[str], float]:
    """Open every socket (at most `concurrency` handshakes in flight); (sockets, errors, seconds)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(url: str):
        async with gate:
            try:
                return await open_socket(url, timeout)
            except Exception as exc:
                return exc

    start = now()
    results = await asyncio.gather(*(one(u) for u in urls))
    seconds = now() - start
    sockets = [r[0] for r in results if not isinstance(r, BaseException)]
    errors = [f"{type(r).__name__}: {r}"[:200] for r in results if isinstance(r, BaseException)]
    return sockets, errors, seconds


async def close_all(sockets: list[ClientConnection], concurrency: int = 200) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(ws: ClientConnection) -> None:
        async with gate:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)

    await asyncio.gather(*(one(ws) for ws in sockets))


@dataclass
class Turn:
    sent: float
    finished: float = 0.0
    first_delta: float | None = None  # seconds from chat.send
    gaps: list[float] = field(default_factory=list)
    frames: int = 0
    bytes: int = 0
    error: str | None = None
    shape: list[list[Any]] = field(default_factory=list)


def frame_type(raw: str) -> str | None:
    """The frame's type without parsing it (`type` is the first key of every frame), else None."""
    for head in ('{"type": "', '{"type":"'):
        if raw.startswith(head):
            end = raw.find('"', len(head))
            return raw[len(head) : end] if end > 0 else None
    return None


async def run_turn(ws: ClientConnection, frame: dict[str, Any], timeout: float, record: bool = False) -> Turn:
    """Send one frame (chat.send or a bare-consumer request) and read up to the end of its turn.

    Delta gaps are measured between consecutive deltas of one message (a message starts with
    llm.start); delta frames are not parsed (cheap client: it shares the machine with the server)."""
    turn = Turn(sent=now())
    last: float | None = None
    try:
        await ws.send(json.dumps(frame))
        async with asyncio.timeout(timeout):
            while True:
                raw = await ws.recv()
                arrived = now()
                turn.frames += 1
                turn.bytes += len(raw)
                kind = frame_type(raw)
                if kind is None or kind not in DELTAS:
                    data = json.loads(raw)
                    kind = data.get("type")
                if record:
                    turn.shape.append([kind, len(raw), round((arrived - turn.sent) * 1000, 3)])
                if kind in DELTAS:
                    if turn.first_delta is None:
                        turn.first_delta = arrived - turn.sent
                    if kind == "llm.delta" and last is not None:
                        turn.gaps.append(arrived - last)
                    last = arrived
                elif kind in ("llm.start", "llm.final"):
                    last = None
                elif kind in FINISHED:
                    if kind in FAILED:
                        turn.error = f"{kind}: {json.dumps(data.get('data'))[:200]}"
                    break
                elif kind == "error":
                    turn.error = f"error frame: {json.dumps(data.get('data'))[:200]}"
                    break
    except TimeoutError:
        turn.error = f"timeout after {timeout:.0f}s ({turn.frames} frames)"
    except Exception as exc:
        turn.error = f"{type(exc).__name__}: {exc}"[:200]
    turn.finished = now()
    return turn


async def set_bare_shape(ws: ClientConnection, shape: dict[str, Any]) -> None:
    """Tell the bare consumer (its process) which frames a turn sends."""
    await ws.send(json.dumps({"type": "bench.shape", **shape}))
    async with asyncio.timeout(10):
        while json.loads(await ws.recv()).get("type") != "bench.ack":
            pass


def turn_frame(spec: dict[str, Any]) -> dict[str, Any]:
    return spec.get("frame") or {"type": "chat.send", "prompt": spec.get("prompt", "Hello, how are you today?")}


async def prepared(spec: dict[str, Any]) -> tuple[list[ClientConnection], list[str], float]:
    sockets, errors, seconds = await open_all(
        spec["urls"], concurrency=spec.get("concurrency", 50), timeout=spec.get("open_timeout", 30)
    )
    if spec.get("bare_shape") and sockets:
        await set_bare_shape(sockets[0], spec["bare_shape"])
    return sockets, errors, seconds


# --------------------------------------------------------------------------- scenarios


async def scenario_probe(spec: dict[str, Any]) -> dict[str, Any]:
    ws, hello = await open_socket(spec["urls"][0], spec.get("open_timeout", 30))
    try:
        if spec.get("bare_shape"):
            await set_bare_shape(ws, spec["bare_shape"])
        turns = [
            await run_turn(ws, turn_frame(spec), spec.get("turn_timeout", 60), record=True)
            for _ in range(spec.get("turns", 2))
        ]
    finally:
        await close_all([ws])
    return {
        "hello_bytes": hello,
        "errors": [t.error for t in turns if t.error],
        "shapes": [t.shape for t in turns],
        "seconds": [t.finished - t.sent for t in turns],
    }


async def scenario_turns(spec: dict[str, Any]) -> dict[str, Any]:
    """Sequential turns on every socket. The measuring window opens once every socket has finished a
    turn (and `warmup` has passed), so it never counts the ramp-up; turns that finish inside it count."""
    sockets, errors, _ = await prepared(spec)
    frame, timeout = turn_frame(spec), spec.get("turn_timeout", 60)
    warmup, duration = spec.get("warmup", 1.0), spec["duration"]
    start = now()
    # Nothing runs past this (a stuck server): the window must open within one turn timeout.
    hard = start + spec.get("max_seconds", warmup + timeout + duration + spec.get("grace", 15.0))
    window: list[float] = []
    warmed: set[int] = set()
    done: list[Turn] = []

    def maybe_open() -> None:
        if not window and len(warmed) == len(sockets) and now() >= start + warmup:
            window[:] = [now(), now() + duration]

    async def loop(index: int, ws: ClientConnection) -> None:
        while (not window or now() < window[1]) and now() < hard:
            turn = await run_turn(ws, frame, max(0.1, min(timeout, hard - now())))
            done.append(turn)
            warmed.add(index)
            if turn.error:
                errors.append(turn.error)
                if "Closed" in turn.error or "timeout" in turn.error:
                    maybe_open()
                    return
            maybe_open()

    try:
        await asyncio.gather(*(loop(i, ws) for i, ws in enumerate(sockets)))
    finally:
        await close_all(sockets)
    counted = [t for t in done if window and window[0] <= t.finished <= window[1] and not t.error]
    return {
        "sockets": len(sockets),
        "turns": len(counted),
        "seconds": duration,
        "rate": len(counted) / duration,
        "window_opened_s": round(window[0] - start, 2) if window else None,
        "errors": len(errors),
        "error_samples": errors[:5],
        "turn_ms_p50": _ms(pct([t.finished - t.sent for t in counted], 50)),
        "frames_per_turn": (sum(t.frames for t in counted) / len(counted)) if counted else None,
    }


async def scenario_streams(spec: dict[str, Any]) -> dict[str, Any]:
    sockets, errors, open_seconds = await prepared(spec)
    frame, timeout = turn_frame(spec), spec.get("turn_timeout", 60)
    await asyncio.sleep(spec.get("settle", 0.5))
    start = now()
    try:
        turns = await asyncio.gather(*(run_turn(ws, frame, timeout) for ws in sockets))
    finally:
        await close_all(sockets)
    errors += [t.error for t in turns if t.error]
    firsts = [t.first_delta for t in turns if t.first_delta is not None]
    gaps = [g for t in turns for g in t.gaps]
    end = max((t.finished for t in turns), default=start)
    frames = sum(t.frames for t in turns)
    missing = sum(1 for t in turns if t.first_delta is None and not t.error)
    return {
        "sockets": len(sockets),
        "open_seconds": open_seconds,
        "errors": len(errors) + missing,
        "error_samples": errors[:5],
        "first_delta_ms_p50": _ms(pct(firsts, 50)),
        "first_delta_ms_p99": _ms(pct(firsts, 99)),
        "gap_ms_p50": _ms(pct(gaps, 50)),
        "gap_ms_p99": _ms(pct(gaps, 99)),
        "gap_ms_max": _ms(max(gaps, default=None)),
        "gaps": len(gaps),
        "frames": frames,
        "seconds": end - start,
        "frames_per_second": frames / (end - start) if end > start else None,
    }


async def scenario_open(spec: dict[str, Any]) -> dict[str, Any]:
    sockets, errors, seconds = await open_all(
        spec["urls"], concurrency=spec.get("concurrency", 50), timeout=spec.get("open_timeout", 30)
    )
    await close_all(sockets)
    return {
        "opened": len(sockets),
        "seconds": seconds,
        "rate": len(sockets) / seconds if seconds else None,
        "errors": len(errors),
        "error_samples": errors[:5],
    }


async def scenario_idle(spec: dict[str, Any]) -> dict[str, Any]:
    sockets, errors, seconds = await open_all(
        spec["urls"], concurrency=spec.get("concurrency", 50), timeout=spec.get("open_timeout", 60)
    )
    print(json.dumps({"opened": len(sockets), "errors": len(errors), "error_samples": errors[:5], "seconds": seconds}))
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the orchestrator closes it
    alive = sum(1 for ws in sockets if ws.close_code is None)
    await close_all(sockets)
    return {"closed": len(sockets), "alive_at_end": alive}


async def scenario_blast(spec: dict[str, Any]) -> dict[str, Any]:
    sockets, errors, _ = await prepared(spec)
    frame = {"type": "bench.blast", "count": spec["count"], "size": spec["size"]}
    await asyncio.sleep(spec.get("settle", 0.3))
    start = now()
    try:
        turns = await asyncio.gather(*(run_turn(ws, frame, spec.get("turn_timeout", 60)) for ws in sockets))
    finally:
        await close_all(sockets)
    errors += [t.error for t in turns if t.error]
    end = max((t.finished for t in turns), default=start)
    frames = sum(t.frames for t in turns)
    return {
        "sockets": len(sockets),
        "frames": frames,
        "seconds": end - start,
        "frames_per_second": frames / (end - start) if end > start else None,
        "errors": len(errors),
        "error_samples": errors[:5],
    }


async def scenario_http(spec: dict[str, Any]) -> dict[str, Any]:
    import httpx2 as httpx

    url, headers = spec["url"], spec.get("headers") or {}
    warmup, duration = spec.get("warmup", 0.5), spec["duration"]
    ok: list[float] = []
    errors: list[str] = []
    sizes: list[int] = []
    limits = httpx.Limits(max_connections=spec["concurrency"], max_keepalive_connections=spec["concurrency"])
    async with httpx.AsyncClient(headers=headers, timeout=30, trust_env=False, limits=limits) as http:
        first = await http.get(url)
        if first.status_code != 200:
            raise RuntimeError(f"GET {url}: {first.status_code} {first.text[:300]}")
        body = first.json()
        items = len(body) if isinstance(body, list) else len(body.get("results", body.get("items", [])))
        start = now()
        window = (start + warmup, start + warmup + duration)

        async def loop() -> None:
            while now() < window[1]:
                sent = now()
                try:
                    response = await http.get(url)
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                if response.status_code == 200:
                    if window[0] <= now() <= window[1]:
                        ok.append(now() - sent)
                        sizes.append(len(response.content))
                else:
                    errors.append(f"{response.status_code}: {response.text[:200]}")

        await asyncio.gather(*(loop() for _ in range(spec["concurrency"])))
    return {
        "requests": len(ok),
        "seconds": duration,
        "rate": len(ok) / duration,
        "latency_ms_p50": _ms(pct(ok, 50)),
        "items": items,
        "bytes": sizes[0] if sizes else len(first.content),
        "errors": len(errors),
        "error_samples": errors[:5],
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


SCENARIOS = {
    "probe": scenario_probe,
    "turns": scenario_turns,
    "streams": scenario_streams,
    "open": scenario_open,
    "idle": scenario_idle,
    "blast": scenario_blast,
    "http": scenario_http,
}


def main() -> None:
    raise_nofile()
    spec = json.loads(sys.stdin.readline())
    result = asyncio.run(SCENARIOS[spec["scenario"]](spec))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
