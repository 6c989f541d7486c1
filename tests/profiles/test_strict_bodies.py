"""Every write route refuses a body key it does not know with a 400 naming it, and writes nothing."""

from __future__ import annotations

import pytest

from chat.models import Conversation
from profiles.models import Profile, ProfileSelection, Registry

from .support import error_of


def state() -> list:
    return [
        *Registry.objects.order_by("slug").values_list("slug", "version", "default_profile_id"),
        *Profile.objects.order_by("pk").values_list("pk", "version", "description"),
        ("selections", ProfileSelection.objects.count()),
        ("conversations", Conversation.objects.count()),
    ]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/profiles/analyst/resolve?registry=default", {"overrides": {}}, "overrides"),
        ("/profile?registry=default", {"slug": "analyst", "profile": "x"}, "profile"),
        ("/profiles/analyst/default?registry=default", {"expected": 3}, "expected"),
        ("/profiles/analyst/versions/1/restore?registry=default", {"version": 1}, "version"),
        ("/conversations", {"profile": "analyst", "titel": "typo"}, "titel"),
    ],
)
def test_an_unknown_body_key_is_a_400_naming_it_and_nothing_is_written(mount, seeded, api_editor, path, body, field):
    before = state()
    response = api_editor.post(mount.url(path), body, format="json")
    assert response.status_code == 400, response.content
    assert error_of(response)["field"] == field
    assert state() == before


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/profiles/analyst/resolve?registry=default", '{"overrides": {}, "overrides": {"x": 1}}'),
        ("/profile?registry=default", '{"slug": "analyst", "slug": "agent"}'),
        ("/conversations", '{"title": "a", "title": "b"}'),
        ("/profiles?registry=default", '{"slug": "twice", "runtime": {"system_prompt": "a", "system_prompt": "b"}}'),
    ],
)
def test_a_key_given_twice_in_one_object_is_a_400_and_nothing_is_written(mount, seeded, api_editor, path, raw):
    """JSON decoders keep the last of two equal keys silently: which one the client meant is a guess."""
    before = state()
    response = api_editor.generic("POST", mount.url(path), raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert "given twice" in error_of(response)["message"]
    assert state() == before
