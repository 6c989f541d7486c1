"""Shared fixtures of the profile platform tests: users, API clients, the seed, the two mounts."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from profiles.yamlio import ImportReport
from tests.helpers import import_seed

from .factories import EditorFactory, UserFactory, join
from .support import MOUNTS, MountCase


def _fresh(user):
    """Re-read the user so freshly granted permissions are not hidden by a permission cache."""
    return get_user_model().objects.get(pk=user.pk)


def client_for(user) -> APIClient:
    """An API client authenticated as `user` (re-read: the permissions it was just granted count)."""
    client = APIClient()
    client.force_authenticate(user=_fresh(user))
    return client


@pytest.fixture
def seeded(db) -> ImportReport:
    """The canonical seed registries (`default` and `inventory`), imported like `make run` does."""
    return import_seed()


@pytest.fixture
def editor(db):
    """A user with profiles.add_profile, change_profile and delete_profile."""
    return _fresh(EditorFactory(username="editor"))


@pytest.fixture
def reader(db):
    """An authenticated user without any profile permission."""
    return _fresh(UserFactory(username="reader"))


@pytest.fixture
def api_editor(editor) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=editor)
    return client


@pytest.fixture
def api_reader(reader) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=reader)
    return client


@pytest.fixture
def api_anon() -> APIClient:
    return APIClient()


@pytest.fixture
def token_client(editor) -> APIClient:
    """An API client that authenticates with `Authorization: Token ...` only (no session)."""
    token, _ = Token.objects.get_or_create(user=editor)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture(params=MOUNTS, ids=lambda m: m.name)
def mount(request) -> MountCase:
    """Each API test runs through both mounts: chat at /api/chat, inventory at /inventory/api/chat."""
    return request.param


@pytest.fixture
def supporter(db):
    """A plain user in the group `support` (no profile permission)."""
    user = UserFactory(username="supporter")
    join(user, "support")
    return _fresh(user)


@pytest.fixture
def api_supporter(supporter) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=supporter)
    return client


@pytest.fixture
def staff_editor(db):
    """Staff with the profile permissions: sees every profile, in no group."""
    user = EditorFactory(username="staff-editor", is_staff=True)
    return _fresh(user)


@pytest.fixture
def api_staff_editor(staff_editor) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=staff_editor)
    return client
