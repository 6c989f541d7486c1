import cProfile, pstats, time
import pytest
from tests.chat.test_turn_pipeline import connect, quiet_timer  # noqa
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_registries")]

async def test_dbg(open_ws, frames_until, settings, quiet_timer, monkeypatch):
    import os
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"
    from chat import aio, worker, consumers, sequencer
    async def inline(fn, *a, **k):
        return fn(*a, **k)
    for m in (aio, worker, sequencer):
        monkeypatch.setattr(m, "run_db", inline)
    settings.CHAT_OFFLINE_DELAY_SECONDS = 0
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 10**6
    c, _ = await connect(open_ws)
    await c.send_json_to({"type": "chat.send", "prompt": "hi"})
    await frames_until(c)
    pr = cProfile.Profile()
    t = time.perf_counter()
    pr.enable()
    for i in range(100):
        await c.send_json_to({"type": "chat.send", "prompt": f"hi again {i}"})
        await frames_until(c)
    pr.disable()
    print("per turn ms", (time.perf_counter() - t) * 10)
    pstats.Stats(pr).sort_stats("tottime").print_stats(30)
    pstats.Stats(pr).sort_stats("cumulative").print_stats(80)
