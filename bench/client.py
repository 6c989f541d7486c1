"""The load client: many real websocket clients (the `websockets` library) or HTTP clients in one
asyncio process, separate from the orchestrator and from the servers.

Reads one JSON spec line on stdin and prints one JSON result line on stdout. Scenarios:

    probe    one socket, a few turns; every frame's type, size and arrival time (the turn's shape)
    turns    sequential turns on each socket for a fixed window: turns/s
    streams  one turn on every socket, all sent at once: first-delta latency, delta gaps, frames/s
    steady   turns arriving at a fixed rate on a pool of sockets (~rate x length at once): the same, steady
    open     open N sockets (each until its ws.hello): sockets/s
    idle     open N sockets, report, hold them until stdin closes, then close them
    blast    (bare consumer) every socket asks for K frames at once: the frame ceiling
    http     GET one URL from C concurrent clients for a fixed window: requests/s
    openai   one chat completion (official openai SDK) to the upstream and through the gateway: latencies

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


async def cancelled_turn(ws: ClientConnection, frame: dict[str, Any], timeout: float) -> None:
    """Send a turn, cancel it (`chat.cancel`) at its first delta and read up to its end."""
    await ws.send(json.dumps(frame))
    async with asyncio.timeout(timeout):
        cancelled = False
        while True:
            raw = await ws.recv()
            kind = frame_type(raw) or json.loads(raw).get("type")
            if kind in DELTAS and not cancelled:
                await ws.send(json.dumps({"type": "chat.cancel"}))
                cancelled = True
            elif kind in FINISHED or kind == "error":
                return


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
        if spec.get("warm_cancel"):  # a first turn (imports, caches) cancelled at its first delta: not recorded
            await cancelled_turn(ws, turn_frame(spec), spec.get("turn_timeout", 60))
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
        "all_turns": sum(1 for t in done if not t.error),  # warm-up included: the server's CPU counts them
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


@dataclass
class LiveTurn:
    """A turn of the steady scenario: delta gaps with their arrival time; `stopping` once the client
    ends it (cancel or close) after the window: what follows is no error."""

    sent: float = 0.0
    finished: float = 0.0
    first_delta: float | None = None
    gaps: list[tuple[float, float]] = field(default_factory=list)  # (arrived, gap)
    completed: bool = False
    error: str | None = None
    stopping: bool = False


async def follow_turn(ws: ClientConnection, payload: str, turn: LiveTurn, timeout: float, counter: list) -> None:
    """run_turn for the steady scenario (same first-delta and gap rules); `counter[0]` counts frames
    arriving inside the window `counter[1:3]`."""
    last: float | None = None
    turn.sent = now()
    try:
        await ws.send(payload)
        async with asyncio.timeout(timeout):
            while True:
                raw = await ws.recv()
                arrived = now()
                if counter[1] <= arrived <= counter[2]:
                    counter[0] += 1
                kind = frame_type(raw)
                if kind is None or kind not in DELTAS:
                    data = json.loads(raw)
                    kind = data.get("type")
                if kind in DELTAS:
                    if turn.first_delta is None:
                        turn.first_delta = arrived - turn.sent
                    if kind == "llm.delta" and last is not None:
                        turn.gaps.append((arrived, arrived - last))
                    last = arrived
                elif kind in ("llm.start", "llm.final"):
                    last = None
                elif kind in FINISHED:
                    if kind in FAILED and not turn.stopping:
                        turn.error = f"{kind}: {json.dumps(data.get('data'))[:200]}"
                    turn.completed = kind == "turn.completed"
                    break
                elif kind == "error":
                    if not turn.stopping:
                        turn.error = f"error frame: {json.dumps(data.get('data'))[:200]}"
                    break
    except TimeoutError:
        if not turn.stopping:
            turn.error = f"timeout after {timeout:.0f}s"
    except Exception as exc:
        if not turn.stopping:
            turn.error = f"{type(exc).__name__}: {exc}"[:200]
    turn.finished = now()


async def scenario_steady(spec: dict[str, Any]) -> dict[str, Any]:
    """Open-loop arrivals: a turn every 1/rate seconds on a free socket of the pool (one conversation
    each), for `ramp` + `window` seconds; concurrency reaches ~rate x turn length by the end of the
    ramp. Measured in the window: the first delta of the turns sent in it, every delta gap arriving in
    it (whichever turn), the turns streaming at once. An arrival finding no free socket is an error
    (the turns got longer than the pool allows), as is any failed turn. After the window (and the
    first deltas of its turns) the turns still running are ended: `chat.cancel` (`cancel`), or their
    sockets closed (the bare consumer)."""
    sockets, errors, open_seconds = await prepared(spec)
    payload, timeout = json.dumps(turn_frame(spec)), spec.get("turn_timeout", 120)
    rate, ramp, window = spec["rate"], spec["ramp"], spec["window"]
    await asyncio.sleep(spec.get("settle", 0.5))
    free = list(reversed(sockets))
    live: dict[ClientConnection, LiveTurn] = {}
    turns: list[LiveTurn] = []
    tasks: set[asyncio.Task] = set()
    start = now()
    w0, w1 = start + ramp, start + ramp + window
    counter: list = [0, w0, w1]
    no_socket = 0
    streaming: list[int] = []

    async def one(ws: ClientConnection, turn: LiveTurn) -> None:
        live[ws] = turn
        try:
            await follow_turn(ws, payload, turn, timeout, counter)
        finally:
            live.pop(ws, None)
            if not turn.stopping and ws.close_code is None:
                free.append(ws)

    async def sample() -> None:
        while now() < w1:
            if now() >= w0:
                streaming.append(len(live))
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    for i in range(int(rate * (ramp + window))):
        wait = start + i / rate - now()
        if wait > 0:
            await asyncio.sleep(wait)
        if not free:
            no_socket += 1
            continue
        turn = LiveTurn()
        turns.append(turn)
        task = asyncio.create_task(one(free.pop(), turn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await sampler
    # The window's last turns get their first delta, then whatever still runs is ended.
    deadline = now() + min(timeout, 30)
    while now() < deadline and any(t.first_delta is None and not t.finished for t in turns if t.sent >= w0):
        await asyncio.sleep(0.05)
    ended = list(live.items())
    for _, turn in ended:
        turn.stopping = True
    if spec.get("cancel", True):
        cancel = json.dumps({"type": "chat.cancel"})
        await asyncio.gather(*(ws.send(cancel) for ws, _ in ended), return_exceptions=True)
    else:
        await close_all([ws for ws, _ in ended])
    if tasks:
        await asyncio.wait(list(tasks), timeout=30)
    await close_all(sockets)

    measured = [t for t in turns if w0 <= t.sent <= w1]
    firsts = [t.first_delta for t in measured if t.first_delta is not None]
    gaps = [gap for t in turns for arrived, gap in t.gaps if w0 <= arrived <= w1]
    errors += [t.error for t in turns if t.error]
    missing = sum(1 for t in measured if t.first_delta is None and not t.error)
    if no_socket:
        errors.append(f"{no_socket} arrivals found no free socket (pool of {len(sockets)})")
    lengths = [t.finished - t.sent for t in turns if t.completed]
    return {
        "sockets": len(sockets),
        "open_seconds": open_seconds,
        "turns": len(turns),
        "measured": len(measured),
        "errors": len(errors) + missing + max(0, no_socket - 1),
        "error_samples": errors[:5],
        "first_delta_ms_p50": _ms(pct(firsts, 50)),
        "first_delta_ms_p99": _ms(pct(firsts, 99)),
        "gap_ms_p50": _ms(pct(gaps, 50)),
        "gap_ms_p99": _ms(pct(gaps, 99)),
        "gap_ms_max": _ms(max(gaps, default=None)),
        "gaps": len(gaps),
        "streaming_mean": sum(streaming) / len(streaming) if streaming else 0,
        "streaming_max": max(streaming, default=0),
        "turn_s_p50": pct(lengths, 50),
        "frames_per_second": counter[0] / window,
        "ended_by_client": len(ended),
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


async def scenario_openai(spec: dict[str, Any]) -> dict[str, Any]:
    """The same chat completion through the official `openai` SDK (retries off) to several targets
    (the upstream itself and the gateway in front of it), non-streamed and streamed, sequential and
    `width` at a time. Targets alternate request by request (sequential) or round by round
    (concurrent), so both see the same machine. A non-2xx, an error event, a stream without content or
    an answer other than the upstream's own is an error. Per variant and target: total time (streamed:
    to the last chunk), time to the first content chunk, and how many waited more than `slow_first`
    seconds for it (a stream that failed counts as waiting)."""
    import openai

    targets: dict[str, dict[str, str]] = spec["targets"]
    names = list(targets)
    body = {"model": spec["model"], "messages": [{"role": "user", "content": spec["prompt"]}]}
    timeout, width, slow_first = spec.get("timeout", 60.0), spec.get("width", 50), spec.get("slow_first", 0.5)
    clients = {
        name: openai.AsyncOpenAI(base_url=t["base_url"], api_key=t["api_key"], max_retries=0, timeout=timeout)
        for name, t in targets.items()
    }
    expected: list[str] = []

    async def one(name: str, stream: bool) -> tuple[float | None, float | None, str | None]:
        """(total seconds, first content chunk seconds, error)."""
        http, first, parts = clients[name], None, []
        sent = now()
        try:
            if stream:
                response = await http.chat.completions.create(**body, stream=True)
                last = sent
                async for chunk in response:
                    last = now()
                    content = chunk.choices[0].delta.content if chunk.choices else None
                    if content:
                        if first is None:
                            first = last - sent
                        parts.append(content)
                total = last - sent
            else:
                answer = await http.chat.completions.create(**body)
                total = now() - sent
                parts.append(answer.choices[0].message.content or "")
        except openai.APIStatusError as exc:
            return None, None, f"{name}: HTTP {exc.status_code}: {str(exc)[:160]}"
        except Exception as exc:
            return None, None, f"{name}: {type(exc).__name__}: {str(exc)[:160]}"
        text = "".join(parts)
        if not expected:
            expected.append(text)
        if not text or text != expected[0]:
            return None, None, f"{name}: answer of {len(text)} chars differs from the upstream's {len(expected[0])}"
        return total, first, None

    # Warm-up (not measured): the upstream's answer, first requests, then the connection pools at full width.
    for stream in (False, True):
        for name in names:  # the first target's answer is the reference
            for _ in range(spec.get("warmup", 3)):
                await one(name, stream)
    for name in names:
        await asyncio.gather(*(one(name, True) for _ in range(width)))

    out: dict[str, Any] = {"expected_chars": len(expected[0]) if expected else 0}
    for mode in ("sequential", "concurrent"):
        for stream in (False, True):
            samples: dict[str, list[tuple[float | None, float | None, str | None]]] = {n: [] for n in names}
            kind = "stream" if stream else "nonstream"
            if mode == "sequential":
                for i in range(spec["sequential"]):
                    for name in names[i % 2 :] + names[: i % 2]:
                        samples[name].append(await one(name, stream))
            else:
                for i in range(spec["rounds"][kind]):
                    for name in names[i % 2 :] + names[: i % 2]:
                        samples[name] += await asyncio.gather(*(one(name, stream) for _ in range(width)))
            variant = out[f"{kind}/{mode}"] = {}
            for name, got in samples.items():
                totals = [t for t, _, e in got if e is None and t is not None]
                firsts = [f for _, f, e in got if e is None and f is not None]
                errors = [e for _, _, e in got if e is not None]
                variant[name] = {
                    "count": len(got),
                    "total_ms_p50": _ms(pct(totals, 50)),
                    "total_ms_p99": _ms(pct(totals, 99)),
                    "first_ms_p50": _ms(pct(firsts, 50)) if stream else None,
                    "first_ms_p99": _ms(pct(firsts, 99)) if stream else None,
                    "slow_first": sum(1 for _, f, e in got if e is not None or f is None or f > slow_first)
                    if stream
                    else None,
                    "errors": len(errors),
                    "error_samples": errors[:3],
                }
    for http in clients.values():
        await http.close()
    return out


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
    "openai": scenario_openai,
    "steady": scenario_steady,
}


def main() -> None:
    raise_nofile()
    spec = json.loads(sys.stdin.readline())
    result = asyncio.run(SCENARIOS[spec["scenario"]](spec))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
