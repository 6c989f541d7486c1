"""Hostile request bodies get JSON errors, never a 500 or an HTML page."""

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

from .factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

DEEP = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize("url", ["/api/chat/profiles", "/inventory/api/chat/conversations", "/api/auth/token"])
def test_deeply_nested_json_is_a_400_not_a_500(api_editor, url):
    response = api_editor.generic("POST", url, DEEP, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_an_oversized_body_is_a_413_json_error(api_editor, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api_editor.generic("POST", "/api/chat/profiles", '{"slug": "' + "x" * 2000 + '"}', "application/json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


def test_token_requests_are_throttled(monkeypatch):
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"auth": "3/min"})
    UserFactory(username="guessme")
    client = APIClient()
    statuses = [
        client.post("/api/auth/token", {"username": "guessme", "password": f"wrong{i}"}, format="json").status_code
        for i in range(4)
    ]
    assert statuses == [400, 400, 400, 429]
    assert sum(cache.get("throttle_auth_127.0.0.1").values()) == 3  # counts per slice (profiles.api.throttling)
    blocked = client.post("/api/auth/token", {"username": "guessme", "password": PASSWORD}, format="json")
    assert blocked.status_code == 429
    assert blocked.json()["error"]["code"] == "throttled"
    assert "Retry-After" in blocked.headers
