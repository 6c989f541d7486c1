"""Runs the blocks of a docs page in order, as a reader pasting them into one terminal would.

A page gets one `bash` process (`set -euo pipefail`), and its shell blocks are sourced into it one after
the other, so what a block sets (variables, functions) is there for the next ones. Python blocks run from
that shell with the venv's python, so they see what the page exported. Every block starts in the
repository root. A failing command ends the shell, and with it the page.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.docs.blocks import ROOT, Block, missing_lines

PYTHON = Path(sys.executable)
BLOCK_TIMEOUT = 30.0
DONE = "__docs_block_done__"


def seed_database(directory: Path) -> str:
    """A fresh SQLite database in `directory`, migrated and seeded (`seed_demo`) like `make run` does: one
    process for both, since loading the project costs seconds."""
    url = f"sqlite:///{directory / 'docs.sqlite3'}"
    script = "from django.core.management import call_command as c; c('migrate', interactive=False, verbosity=0); c('seed_demo')"
    done = subprocess.run(
        [str(PYTHON), "manage.py", "shell", "-v", "0", "-c", script],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"migrating and seeding failed:\n{done.stdout}{done.stderr}")
    return url


@dataclass
class Outcome:
    block: Block
    output: str = ""
    returncode: int | None = None  # None: not run
    missing: list[str] | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.block.not_run is not None or (self.returncode == 0 and not self.missing)

    def summary(self, *, setup_seconds: float) -> dict[str, object]:
        """What the run's summary says of the block: recorded on the test's report (`record_property`),
        so it reaches the summary from a pytest-xdist worker too."""
        block = self.block
        return {
            "page": block.page,
            "where": block.where,
            "not_run": block.not_run,
            "seconds": self.seconds,
            "setup_seconds": setup_seconds,
        }

    def report(self) -> str:
        if self.returncode != 0:
            head = f"{self.block.where}: exited {self.returncode}"
        else:
            head = f"{self.block.where}: the output does not show {self.missing}"
        return f"{head}\n--- block ---\n{self.block.code}--- output ---\n{self.output[-4000:]}"


class Page:
    """One page's terminal: a bash process the blocks are sourced into."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.shell = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=ROOT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # its own process group: what a page starts in the background ends with it
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._send("set -euo pipefail")

    def _read(self) -> None:
        assert self.shell.stdout is not None
        for line in self.shell.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _send(self, text: str) -> None:
        assert self.shell.stdin is not None
        self.shell.stdin.write(text + "\n")
        self.shell.stdin.flush()

    def run(self, block: Block) -> Outcome:
        outcome = Outcome(block)
        if block.not_run is not None:
            return outcome
        script = self.workdir / f"block_{block.line}.{'py' if block.kind == 'python' else 'sh'}"
        script.write_text(block.code)
        command = f"{shlex.quote(str(PYTHON))} {shlex.quote(str(script))}" if block.kind == "python" else ""
        command = command or f"source {shlex.quote(str(script))}"
        started = time.monotonic()
        self._send(f"cd {shlex.quote(str(ROOT))}; {command}; printf '\\n{DONE} %s\\n' $?")
        output: list[str] = []
        deadline = started + BLOCK_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                outcome.returncode = -1
                output.append(f"\n(no end after {BLOCK_TIMEOUT:.0f} s)\n")
                self.close()
                break
            if line is None:  # the shell ended: `set -e` met a failing command
                outcome.returncode = self.shell.wait()
                break
            if line.startswith(DONE):
                outcome.returncode = int(line.split()[1])
                if output and output[-1].endswith("\n"):
                    output[-1] = output[-1][:-1]  # the newline printf added before the mark
                break
            output.append(line)
        outcome.output = "".join(output)
        outcome.seconds = time.monotonic() - started
        if outcome.returncode == 0:
            outcome.missing = missing_lines(block.expected, outcome.output)
        return outcome

    def close(self) -> None:
        """End the page's shell and everything it started (a server a block ran in the background)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.shell.pid, signal.SIGKILL)
        self.shell.wait()
