"""The turn pipeline's rooms (docs/architecture.md): each rule in one module, and the ways in (the
websocket consumer, the REST views, the gateway) reach turns only through `chat.turns` and `chat.replay`.
"""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chat import frames
from chat.frames import LiveFilter
from chat.views import ConversationMessagesView

CHAT = Path(__file__).resolve().parents[2] / "chat"
ENTRANCES = ("consumers.py", "views.py", "gateway/services.py", "gateway/following.py", "gateway/views.py")
INTERNALS = {
    "chat.control",
    "chat.dispatcher",
    "chat.live",
    "chat.preparation",
    "chat.streams",
    "chat.sequencer",
}  # what only the pipeline uses


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
    """`.covers(` / `.covered` (deltas covered by a replay's text) appear in the catalog and the replay only."""
    users = {
        name
        for name, tree in chat_modules().items()
        if any(isinstance(n, ast.Attribute) and n.attr in ("covers", "covered") for n in ast.walk(tree))
    }
    assert users == {"frames.py", "replay.py"}


def test_the_server_starts_without_importing_a_provider_sdk():
    """The openai and anthropic SDKs take about two seconds to import: an engine of theirs loads them. The
    mcp SDK (about one) is loaded by the first MCP tool call or `/mcp` request."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, django; django.setup(); import config.asgi, config.urls; "
            "print(sorted({'openai', 'anthropic', 'mcp', 'mcp_types'} & set(sys.modules)))",
        ],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert loaded.stdout.strip() == "[]", loaded.stderr


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
    ("frame", "replayed", "covered", "new"),
    [
        ({"type": "llm.final", "seq": 5}, {5}, 5, False),  # the replay sent it
        ({"type": "llm.final", "seq": 6}, {5}, 5, True),
        ({"type": "llm.delta", "seq": 7}, set(), 7, False),  # in the replay's text (snapshot or final)
        ({"type": "llm.delta", "seq": 8}, set(), 7, True),
        ({"type": "chat.message", "seq": 4}, {3, 5}, 7, True),  # numbered elsewhere, not stored yet: delivered
        ({"type": "turn.completed", "seq": 7}, set(), 7, True),  # only deltas are covered by the text
    ],
)
def test_a_live_frame_is_dropped_only_when_the_replay_covered_it(frame, replayed, covered, new):
    seen = LiveFilter()
    for seq in replayed:
        seen.replaying({"type": "llm.start", "seq": seq})
    seen.covers(covered)
    assert seen.is_new(frame) is new


def test_an_interrupted_turn_is_announced_as_failed_with_its_status():
    type, data = frames.turn_end(turn_id="t", status="interrupted", text="part", error={"code": "interrupted"})
    assert (type, data["status"], data["text"]) == ("turn.failed", "interrupted", "part")
    type, data = frames.turn_end(turn_id="t", status="completed", text="all", usage={}, stop_reason="end")
    assert (type, data["stop_reason"]) == ("turn.completed", "end")


def test_a_hole_in_the_frames_sent_is_watched_from_the_first_frame_and_closed_by_a_repair():
    from chat.frames import GapWatch

    gaps = GapWatch()
    for seq in (12, 11, 13):  # one publisher's frame overtook another's for a moment: no hole is left
        assert not gaps.was_sent({"type": "llm.delta", "seq": seq})
        gaps.sent({"type": "llm.delta", "seq": seq})
    assert not gaps.has_hole()
    assert gaps.was_sent({"type": "llm.delta", "seq": 12})
    gaps.sent({"type": "llm.delta", "seq": 17})  # 14-16 never came (the channel layer dropped them)
    assert gaps.has_hole() and not gaps.was_sent({"type": "llm.final", "seq": 15})
    assert not gaps.was_sent({"type": "llm.snapshot", "seq": 18})  # a snapshot beyond what was sent covers the hole
    assert gaps.was_sent({"type": "llm.snapshot", "seq": 17})  # never one seq twice
    gaps.close()
    assert not gaps.has_hole() and gaps.upto == 17
    gaps.sent({"type": "llm.delta", "seq": 30})
    gaps.sent({"type": "llm.snapshot", "seq": 29})  # a replay's snapshot: the text up to 29, no hole left
    assert not gaps.has_hole() and gaps.upto == 30
