"""No template syntax reaches a page: Django's `{# #}` comments are one line only, so a comment over
several lines is printed as text on every page (it was, at the top of every app page)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_TEXT = re.compile(r"\{#|#\}|\{%|%\}|\{\{|\}\}")


def templates() -> list[Path]:
    found = [p for p in ROOT.rglob("*.html") if ".venv" not in p.parts and "vendor" not in p.parts]
    assert len(found) >= 5  # the walk really read the templates
    return found


def test_every_template_comment_opens_and_closes_on_one_line():
    unclosed = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in templates()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if line.count("{#") != line.count("#}")
    ]
    assert unclosed == []


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/", "/inventory/", "/admin/"])
def test_pages_as_served_hold_no_template_syntax(admin_client, path):
    body = admin_client.get(path, follow=True).content.decode()
    text = re.sub(r"<script\b.*?</script>", "", body, flags=re.S)  # scripts may hold braces of their own
    assert TEMPLATE_TEXT.findall(text) == []
