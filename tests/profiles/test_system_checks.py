"""The project invariants registered as Django system checks."""

import pytest
from django.core.checks import run_checks

from profiles.definitions import MiddlewareDefinition, ToolDefinition, definitions
from profiles.models import Registry
from profiles.yamlio import import_file


def _ids(**kwargs):
    return sorted(e.id for e in run_checks(**kwargs) if e.id.startswith("profiles."))


@pytest.fixture
def extra_definitions():
    """Register broken definitions for one test only."""
    added = []

    def add(kind, item):
        getattr(definitions, kind)[item.name] = item
        added.append((kind, item.name))

    yield add
    for kind, name in added:
        del getattr(definitions, kind)[name]


def test_the_project_passes_its_checks():
    assert _ids() == []


def test_it_flags_an_invalid_middleware_schema_and_a_missing_implementation(extra_definitions):
    extra_definitions(
        "middlewares", MiddlewareDefinition("broken", 1, "Broken", "", schema={"type": "nonsense"}, factory=None)
    )
    assert _ids() == ["profiles.E001", "profiles.E002"]


def test_it_flags_a_writing_tool_without_permission(extra_definitions):
    extra_definitions(
        "tools",
        ToolDefinition(
            "writer", "", {"type": "object"}, writes=True, mounts=frozenset({"chat"}), implementation=object()
        ),
    )
    assert _ids() == ["profiles.E004"]


@pytest.mark.django_db
def test_the_database_check_finds_a_registry_without_default():
    import_file("config/seed/registries.yaml")
    assert _ids(databases=["default"], include_deployment_checks=False) == []
    Registry.objects.filter(slug="default").update(default_profile=None)
    assert _ids(databases=["default"]) == ["profiles.E020"]


@pytest.mark.django_db(transaction=True)
def test_the_database_check_passes_before_migrations(django_db_blocker):
    from django.core.management import call_command

    call_command("migrate", "profiles", "zero", verbosity=0)
    try:
        assert _ids(databases=["default"]) == []
    finally:
        call_command("migrate", verbosity=0)
