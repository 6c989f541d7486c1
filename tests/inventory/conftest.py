from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.utils.module_loading import import_string
from rest_framework.test import APIClient

from chat.runtime.base import ToolContext
from inventory.seed import seed_inventory
from tests.helpers import RecordingEmit as Recorder

from .factories import UserFactory

WRITE_PERMS = [
    "inventory.add_item",
    "inventory.change_item",
    "inventory.delete_item",
    "inventory.add_sale",
]


@pytest.fixture(autouse=True)
def _exception_handler(settings) -> None:
    """Fall back to DRF's handler only while the project's global one is not written yet."""
    try:
        import_string(settings.REST_FRAMEWORK["EXCEPTION_HANDLER"])
    except ImportError:
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "EXCEPTION_HANDLER": "rest_framework.views.exception_handler",
        }


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def seeded(db) -> None:
    seed_inventory()


def _fresh(user):
    """Re-read the user so granted permissions are not hidden by a permission cache."""
    return get_user_model().objects.get(pk=user.pk)


@pytest.fixture
def reader(db):
    return _fresh(UserFactory(username="reader"))


@pytest.fixture
def writer(db):
    return _fresh(UserFactory(username="writer", perms=WRITE_PERMS))


@pytest.fixture
def api_client(reader) -> APIClient:
    """Authenticated, without any inventory permission."""
    client = APIClient()
    client.force_authenticate(user=reader)
    return client


@pytest.fixture
def writer_client(writer) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=writer)
    return client


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def tool_context(recorder) -> Callable[..., ToolContext]:
    def make(user=None) -> ToolContext:
        return ToolContext(
            user_id=user.pk if user else None,
            username=user.get_username() if user else "",
            mount="inventory",
            has_perm=user.has_perm if user else (lambda perm: False),
            emit=recorder,
        )

    return make
