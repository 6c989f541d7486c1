"""👍/👎 under an answer (feedback tied to versions), in Debian's Chromium against real daphne: a click
rates the answer, the rating is back after a reload, and the version's REST stats count it."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from chat.models import Turn

from .browser import api, ask, current_conv_id, new_page, open_app, session_login, shot

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def thumbs(server, alice, version: int) -> tuple[int, int]:
    status, row = api(server.url, "GET", f"/api/chat/profiles/default/versions/{version}/stats", alice.token)
    assert status == 200, row
    return row["thumbs_up"], row["thumbs_down"]


def test_a_thumbs_down_is_kept_after_a_reload_and_counted_in_the_version_stats(browser, server, alice):
    context, page, watch = new_page(browser, server.url)
    session_login(context, server.url, get_user_model().objects.get(pk=alice.pk))
    try:
        open_app(page)
        ask(page, "hello")
        answer = page.get_by_test_id("turn").last
        up = answer.get_by_role("button", name="Good answer")
        down = answer.get_by_role("button", name="Bad answer")
        expect(up).to_have_attribute("aria-pressed", "false")
        expect(down).to_have_attribute("aria-pressed", "false")
        turn = Turn.objects.get(conversation_id=current_conv_id(page))
        assert thumbs(server, alice, turn.profile_version) == (0, 0)

        down.click()
        expect(down).to_have_attribute("aria-pressed", "true")
        expect(up).to_have_attribute("aria-pressed", "false")

        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        answer = page.locator(f"[data-testid=turn][data-turn-id='{turn.pk}']")
        expect(answer.get_by_role("button", name="Bad answer")).to_have_attribute("aria-pressed", "true")
        expect(answer.get_by_role("button", name="Good answer")).to_have_attribute("aria-pressed", "false")
        assert thumbs(server, alice, turn.profile_version) == (0, 1)
        shot(page, "feedback-thumbs")

        # Clicking the rating given withdraws it.
        answer.get_by_role("button", name="Bad answer").click()
        expect(answer.get_by_role("button", name="Bad answer")).to_have_attribute("aria-pressed", "false")
        assert thumbs(server, alice, turn.profile_version) == (0, 0)
        watch.assert_clean()
    finally:
        context.close()
