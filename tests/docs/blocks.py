"""The code blocks of the README and docs/ that the docs test runs, and how their shown output is checked.

The conventions (documented in docs/README.md, "How these docs are tested"):

- ```sh, ```bash and ```python blocks run; ```console blocks run their `$ ` lines and the other lines are
  their expected output.
- `<!-- not run: <reason> -->` on the line just before a block marks it as not runnable here (a production
  deployment, `make run` itself); the test lists it as skipped with its reason.
- An ```output block right after a runnable block holds lines its output must show, in order; `…` in a
  line stands for any text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNNABLE = {"sh": "shell", "bash": "shell", "console": "console", "python": "python"}
FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})\s*([^`\s]*)(.*)$")
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(.+?)\s*-->\s*$")
ELLIPSIS = "…"


class DocFormatError(ValueError):
    """A docs page breaks the conventions (an output block nothing produces, a marker on nothing)."""


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    kind: str  # shell, console or python
    code: str
    expected: list[str] = field(default_factory=list)  # lines the output must show, in order
    not_run: str | None = None  # the reason, when marked

    @property
    def page(self) -> str:
        """The page's path from the repository root (there are two README.md)."""
        return str(self.path.relative_to(ROOT)) if self.path.is_relative_to(ROOT) else self.path.name

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass
class _Fence:
    line: int  # the opening fence, 1-based
    end: int  # the closing fence, 1-based
    lang: str
    body: list[str]
    marker: str | None


def _fences(text: str, path: Path) -> list[_Fence]:
    lines = text.splitlines()
    fences: list[_Fence] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, ticks, lang = m.group(1), m.group(2), m.group(3).lower()
        previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker_match = NOT_RUN.match(lines[i - 1].strip()) if i else None
        if not marker_match and NOT_RUN.match(previous):
            raise DocFormatError(f"{path.name}:{i + 1}: a `not run` marker must be on the line just before the block")
        close = re.compile(rf"^ {{0,3}}{ticks[0]}{{{len(ticks)},}}\s*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        if j == len(lines):
            raise DocFormatError(f"{path.name}:{i + 1}: the block is never closed")
        fences.append(_Fence(i + 1, j + 1, lang, body, marker_match.group(1) if marker_match else None))
        i = j + 1
    return fences


def _console(body: list[str]) -> tuple[str, list[str]]:
    """`$ ` lines (and their `\\` continuations) are the commands; the other lines their output."""
    commands: list[str] = []
    output: list[str] = []
    continued = False
    for raw in body:
        if continued or raw.startswith("$ "):
            line = raw if continued else raw[2:]
            commands.append(line)
            continued = line.endswith("\\")
        elif raw.strip():
            output.append(raw)
    return "\n".join(commands) + "\n", output


def extract(path: Path) -> list[Block]:
    """Every runnable block of a page, in order, with the output it shows and its `not run` marker."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    previous: _Fence | None = None
    for fence in _fences("\n".join(lines), path):
        if fence.lang == "output":
            adjacent = previous is not None and not any(s.strip() for s in lines[previous.end : fence.line - 1])
            if not (adjacent and previous is not None and RUNNABLE.get(previous.lang) and blocks):
                raise DocFormatError(f"{path.name}:{fence.line}: an output block must follow a runnable block")
            if blocks[-1].not_run:
                raise DocFormatError(
                    f"{path.name}:{fence.line}: the output of a block that is not run is never checked"
                )
            blocks[-1].expected.extend(line for line in fence.body if line.strip())
        else:
            kind = RUNNABLE.get(fence.lang)
            if kind is None and fence.marker:
                raise DocFormatError(f"{path.name}:{fence.line}: `not run` marks a block that never runs")
            if kind == "console":
                code, expected = _console(fence.body)
                blocks.append(Block(path, fence.line, kind, code, expected, fence.marker))
            elif kind is not None:
                blocks.append(Block(path, fence.line, kind, "\n".join(fence.body) + "\n", [], fence.marker))
        previous = fence
    return blocks


def missing_lines(expected: list[str], output: str) -> list[str]:
    """The expected lines the output does not show, in order: each must be found in a line after the
    previous one's; `…` matches any text."""
    actual = output.splitlines()
    missing: list[str] = []
    at = 0
    for want in expected:
        pattern = re.compile(".*?".join(re.escape(part) for part in want.strip().split(ELLIPSIS)))
        for n in range(at, len(actual)):
            if pattern.search(actual[n]):
                at = n + 1
                break
        else:
            missing.append(want)
    return missing
