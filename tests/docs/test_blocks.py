"""The docs runner's conventions (docs/README.md, "How these docs are tested"): which blocks run, which are
marked not run, how shown output is checked, and that blocks share one terminal per page."""

from __future__ import annotations

import pytest

from tests.docs.blocks import DocFormatError, extract, missing_lines
from tests.docs.runner import Page


def page(tmp_path, text: str):
    path = tmp_path / "page.md"
    path.write_text(text, encoding="utf-8")
    return path


def test_shell_python_and_console_blocks_run_and_others_do_not(tmp_path):
    blocks = extract(
        page(
            tmp_path,
            "# t\n\n```sh\necho a\n```\n\n```json\n{}\n```\n\n```python\nprint(1)\n```\n\n"
            "```bash\necho b\n```\n\n```text\nx\n```\n\n```console\n$ echo c\nc\n```\n",
        )
    )
    assert [(b.line, b.kind) for b in blocks] == [(3, "shell"), (11, "python"), (15, "shell"), (23, "console")]
    assert blocks[3].code == "echo c\n"
    assert blocks[3].expected == ["c"]


def test_a_marker_just_before_a_block_marks_it_not_run_with_its_reason(tmp_path):
    blocks = extract(page(tmp_path, "<!-- not run: serves forever -->\n```sh\nmake run\n```\n\n```sh\necho ok\n```\n"))
    assert [b.not_run for b in blocks] == ["serves forever", None]


@pytest.mark.parametrize(
    "text",
    [
        "<!-- not run: far -->\n\n```sh\nmake run\n```\n",  # not on the line just before
        "<!-- not run: json -->\n```json\n{}\n```\n",  # on a block that never runs
        "text\n\n```output\nhello\n```\n",  # output of nothing
        "```json\n{}\n```\n\n```output\nhello\n```\n",  # output of a block that does not run
        "<!-- not run: x -->\n```sh\necho\n```\n\n```output\nhello\n```\n",  # output never checked
        "```sh\necho\n```\n\nprose between\n\n```output\nhello\n```\n",  # not right after
        "```sh\necho\n",  # never closed
    ],
)
def test_a_page_that_breaks_the_conventions_is_refused(tmp_path, text):
    with pytest.raises(DocFormatError):
        extract(page(tmp_path, text))


def test_an_output_block_lists_the_lines_the_block_must_show(tmp_path):
    (block,) = extract(page(tmp_path, "```sh\necho hi\n```\n\n```output\nhi\n\nthere\n```\n"))
    assert block.expected == ["hi", "there"]


def test_expected_lines_must_appear_in_order_and_the_ellipsis_stands_for_any_text():
    output = 'HTTP/1.1 201 Created\nLocation: http://x/api/1\n{"id":"abc","ok":true}\n'
    assert missing_lines(["201 Created", '{"id":"…","ok":true}'], output) == []
    assert missing_lines(['{"id":"…","ok":false}'], output) == ['{"id":"…","ok":false}']
    assert missing_lines(["Location", "201 Created"], output) == ["201 Created"]  # out of order
    assert missing_lines(["a.c"], "abc") == ["a.c"]  # text, not a regular expression


def test_blocks_of_a_page_share_one_terminal(tmp_path):
    blocks = extract(
        page(
            tmp_path,
            '```sh\nX=1\nexport Y=2\nf() { echo "f$1"; }\n```\n\n'
            '```sh\necho "$X $Y $(f 3)"\n```\n\n```output\n1 2 f3\n```\n\n'
            "```python\nimport os\nprint(os.environ.get('X'), os.environ.get('Y'))\n```\n\n```output\nNone 2\n```\n",
        )
    )
    terminal = Page(tmp_path, {"BASE": "http://127.0.0.1:1"})
    try:
        outcomes = [terminal.run(b) for b in blocks]
    finally:
        terminal.close()
    assert [o.ok for o in outcomes] == [True, True, True], [o.report() for o in outcomes]


def test_a_failing_command_fails_its_block_and_unset_variables_are_errors(tmp_path):
    blocks = extract(page(tmp_path, "```sh\nfalse\necho never\n```\n\n```sh\necho $UNSET\n```\n"))
    for block in blocks:
        terminal = Page(tmp_path, {})
        try:
            outcome = terminal.run(block)
        finally:
            terminal.close()
        assert outcome.returncode != 0 and not outcome.ok
        assert "never" not in outcome.output


def test_output_the_block_does_not_show_fails_it(tmp_path):
    (block,) = extract(page(tmp_path, "```sh\necho 200\n```\n\n```output\n201\n```\n"))
    terminal = Page(tmp_path, {})
    try:
        outcome = terminal.run(block)
    finally:
        terminal.close()
    assert outcome.returncode == 0 and outcome.missing == ["201"] and not outcome.ok


def test_a_block_marked_not_run_is_not_run(tmp_path):
    (block,) = extract(page(tmp_path, '<!-- not run: x -->\n```sh\ntouch "$MARK"\n```\n'))
    terminal = Page(tmp_path, {"MARK": str(tmp_path / "ran")})
    try:
        outcome = terminal.run(block)
    finally:
        terminal.close()
    assert outcome.returncode is None and outcome.ok
    assert not (tmp_path / "ran").exists()
