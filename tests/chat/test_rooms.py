"""The turn pipeline's rooms (docs/architecture.md): each rule in one module, and the ways in (the
websocket consumer, the REST views, the gateway) reach turns only through `chat.turns` and `chat.replay`.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from chat import frames
from chat.frames import LiveFilter
from chat.views import ConversationMessagesView

CHAT = Path(__file__).resolve().parents[2] / "chat"
ENTRANCES = ("consumers.py", "views.py", "gateway/services.py", "gateway/views.py")
INTERNALS = {"chat.dispatcher", "chat.streams", "chat.sequencer"}  # what only the pipeline uses


def chat_modules() -> dict[str, ast.Module]:
    files = {
        str(path.relative_to(CHAT)): ast.parse(path.read_text(), filename=str(path))
        for path in CHAT.rglob("*.py")
        if "migrations" not in path.parts and "runtime" not in path.parts
    }
    assert len(files) > 20  # the walk really read the app
    return files


def imports(relative: str, tree: ast.Module) -> set[str]:
    package = ["chat", *Path(relative).parts[:-1]]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join([*base, *([node.module] if node.module else [])])
            found.add(name)
            if not node.module:
                found.update(f"{name}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_there_is_no_worker_module_left():
    assert not (CHAT / "worker.py").exists()
    assert all("chat.worker" not in imports(name, tree) for name, tree in chat_modules().items())


def test_the_ways_in_use_no_pipeline_internals():
    """Submitting, waiting and replaying go through `chat.turns` / `chat.replay`: the consumer, the REST
    views and the gateway never number frames, drive the dispatcher's internals or the sequencer's writes."""
    modules = chat_modules()
    offenders = {name: sorted(imports(name, modules[name]) & (INTERNALS - {"chat.sequencer"})) for name in ENTRANCES}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_frames_are_shaped_only_in_the_catalog():
    """A dict literal with both `type` and `seq` keys is a frame envelope: only `chat/frames.py` makes one."""
    shaped = set()
    for name, tree in chat_modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                if {"type", "seq"} <= keys:
                    shaped.add(name)
    assert shaped == {"frames.py"}


def test_the_replay_and_live_deduplication_is_written_once():
    """`snapshot_seq` (deltas covered by a replay's snapshot) appears in the catalog's filter only."""
    users = {
        name
        for name, tree in chat_modules().items()
        if any(isinstance(n, ast.Attribute | ast.Name) and "snapshot_seq" in ast.unparse(n) for n in ast.walk(tree))
    }
    assert users == {"frames.py"}


def test_nothing_in_the_app_waits_by_sleeping_on_a_thread():
    """`?wait=1` and the gateway wait in `turns.await_turn` on the loop; no `time.sleep` polls a row."""
    sleepers = {
        name
        for name, tree in chat_modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("time.sleep", "sleep")
    }
    assert sleepers == set()
    assert inspect.iscoroutinefunction(ConversationMessagesView.post)


@pytest.mark.parametrize(
    ("frame", "replayed", "snapshot_seq", "new"),
    [
        ({"type": "llm.final", "seq": 5}, {5}, 0, False),  # the replay sent it
        ({"type": "llm.final", "seq": 6}, {5}, 0, True),
        ({"type": "llm.delta", "seq": 7}, set(), 7, False),  # in the snapshot's text
        ({"type": "llm.delta", "seq": 8}, set(), 7, True),
        ({"type": "turn.completed", "seq": 7}, set(), 7, True),  # a snapshot covers deltas only
    ],
)
def test_a_live_frame_is_dropped_only_when_the_replay_covered_it(frame, replayed, snapshot_seq, new):
    seen = LiveFilter()
    for seq in replayed:
        seen.replaying({"type": "llm.start", "seq": seq})
    if snapshot_seq:
        seen.replaying({"type": "llm.snapshot", "seq": snapshot_seq})
    assert seen.is_new(frame) is new


def test_an_interrupted_turn_is_announced_as_failed_with_its_status():
    type, data = frames.turn_end(turn_id="t", status="interrupted", text="part", error={"code": "interrupted"})
    assert (type, data["status"], data["text"]) == ("turn.failed", "interrupted", "part")
    type, data = frames.turn_end(turn_id="t", status="completed", text="all", usage={}, stop_reason="end")
    assert (type, data["stop_reason"]) == ("turn.completed", "end")
