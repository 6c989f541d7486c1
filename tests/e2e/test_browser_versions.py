"""The chat page shows how a conversation follows its profile (latest, a label, or pinned to a version) and
lets the user choose a label or a version of it (profile lifecycle issue), in Debian's Chromium against real
daphne. The answers' records name the version that produced them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from chat.models import Turn
from profiles import services

from .browser import ask, choose_profile, current_conv_id, new_page, open_app, select_profile, session_login
from .helpers import seed

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture
def ui(browser, daphne_server):
    """The seed, `agent` at version 2 with `production` on version 1, and a signed-in superuser."""
    seed()
    user = get_user_model().objects.create_superuser("vera", "vera@example.com", "pw-vera-1")
    services.profile_update(registry_slug="default", slug="agent", changes={"description": "Agent, version two"})
    services.label_set(registry_slug="default", slug="agent", name="production", version=1, actor=user)
    context, page, watch = new_page(browser, daphne_server.url)
    session_login(context, daphne_server.url, user)
    yield SimpleNamespace(page=page, watch=watch)
    context.close()


def test_the_user_sees_how_the_conversation_follows_its_profile_and_pins_a_version_or_a_label(ui):
    page = ui.page
    open_app(page)
    select_profile(page, "agent")
    picker = page.get_by_test_id("profile-picker")
    expect(picker).to_have_accessible_name("Profile: Agent · follows latest (v2)")
    expect(picker).to_have_attribute("data-mode", "follow")
    picker.click()
    version = page.get_by_test_id("picker-version")
    # Fetched when the panel opens: the labels and the versions, newest first.
    expect(version.locator("option")).to_have_text(
        ["Latest: follows new versions (now v2)", "production (now v1)", "Pinned to v2", "Pinned to v1"]
    )
    expect(version).to_have_value("")
    page.keyboard.press("Escape")

    choose_profile(page, "agent", scope="conversation", version="production")
    expect(picker).to_have_accessible_name("Profile: Agent · follows production (v1)")
    expect(picker).to_have_attribute("data-mode", "label")
    ask(page, "hello from production")

    choose_profile(page, "agent", scope="conversation", version="2")
    expect(picker).to_have_accessible_name("Profile: Agent · pinned to v2")
    expect(picker).to_have_attribute("data-mode", "pinned")
    ask(page, "hello from version two")

    conv_id = current_conv_id(page)
    records = list(
        Turn.objects.filter(conversation_id=conv_id).order_by("seq").values_list("profile_ref", "profile_version")
    )
    assert records == [("agent@production", 1), ("agent@2", 2)]

    page.reload()
    open_app(page, f"/#conv={conv_id}")
    expect(picker).to_have_accessible_name("Profile: Agent · pinned to v2")
    picker.click()
    expect(version).to_have_value("2")  # the panel opens on the conversation's choice
    expect(page.get_by_test_id("scope-conversation").locator("input")).to_be_checked()
    ui.watch.assert_clean()
