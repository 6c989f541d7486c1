"""Every shell and Python block of the README and docs/ runs, in order, against a freshly seeded server,
and shows the output the text says it shows (conventions: tests/docs/blocks.py, docs/README.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.blocks import extract
from tests.docs.runner import ROOT, Outcome, Page
from tests.e2e.server import free_port

INDEX = ROOT / "docs" / "README.md"


def pages() -> list[Path]:
    """The README, the index, then the pages in the index's order."""
    linked = re.findall(r"\]\(([a-z-]+\.md)\)", INDEX.read_text(encoding="utf-8"))
    ordered = list(dict.fromkeys(ROOT / "docs" / name for name in linked))
    return [ROOT / "README.md", INDEX, *ordered]


def test_every_docs_page_is_in_the_index_so_it_runs():
    on_disk = set((ROOT / "docs").glob("*.md"))
    assert on_disk - set(pages()) == set()


@pytest.mark.e2e
@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_block_of_the_page_runs_and_shows_its_output(page, docs_server, record_property, tmp_path):
    blocks = extract(page)
    terminal = Page(
        tmp_path,
        {
            "BASE": docs_server.url,
            "DATABASE_URL": docs_server.database_url,
            "TMPDIR": str(tmp_path),
            "LANG": "C.UTF-8",
            # Where a page serves its own demo servers (docs/mcp.md's MCP server; 8765 for a reader).
            "MCP_PORT": str(free_port()),
        },
    )
    outcomes: list[Outcome] = []
    try:
        for block in blocks:
            outcome = terminal.run(block)
            outcomes.append(outcome)
            # On the test's report (it reaches the summary from an xdist worker too).
            record_property("docs_block", outcome.summary(setup_seconds=docs_server.setup_seconds))
            assert outcome.ok, outcome.report()
    finally:
        terminal.close()
    not_run = [o.block for o in outcomes if o.returncode is None]
    assert not_run == [b for b in blocks if b.not_run is not None]
    assert all(b.not_run for b in not_run)  # each with its reason, listed in the summary


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: the rendered text, lower-cased, punctuation dropped, spaces to `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _prose(text: str) -> str:
    return re.sub(r"^( {0,3})(`{3,}).*?^\1\2", "", text, flags=re.MULTILINE | re.DOTALL)


def test_every_relative_link_and_anchor_of_the_docs_resolves():
    broken = []
    for page in pages():
        for link in re.findall(r"\]\(([^)\s]+)\)", _prose(page.read_text(encoding="utf-8"))):
            if re.match(r"[a-z]+:", link):
                continue
            path, _, fragment = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            if not target.exists():
                broken.append(f"{page.name}: {link}")
            elif fragment and target.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", _prose(target.read_text(encoding="utf-8")), re.MULTILINE)
                if fragment not in {_anchor(h) for h in headings}:
                    broken.append(f"{page.name}: {link}")
    assert broken == []
