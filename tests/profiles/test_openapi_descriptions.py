"""The published OpenAPI schema describes operations and bodies for their callers, not the code's base classes."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

# Words of the internal docstrings that drf-spectacular used to publish for every operation without a
# description of its own (it falls back to the nearest docstring of the view's classes).
INTERNAL = ("as_view(", "APIView", "`mounted`", "dispatch", "`ignored`: keys", "nested serializer", "coroutine")


@pytest.fixture(scope="module")
def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


@pytest.fixture(scope="module")
def operations(schema) -> dict[str, str]:
    return {
        f"{method.upper()} {path}": operation.get("description", "")
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
        if isinstance(operation, dict)
    }


def test_no_operation_is_described_by_an_internal_base_class(operations):
    leaked = {name: text for name, text in operations.items() if any(word in text for word in INTERNAL)}

    assert not leaked, sorted(leaked)[:10]


def test_no_request_body_is_described_by_a_mixin_of_the_code(schema):
    """Request bodies' components: the strict-keys mixin's notes are for the code, not for callers."""
    leaked = {
        name: component.get("description", "")
        for name, component in schema["components"]["schemas"].items()
        if any(word in component.get("description", "") for word in INTERNAL)
    }

    assert not leaked, sorted(leaked)[:10]


def test_an_operation_with_a_description_of_its_own_keeps_it(operations):
    assert operations["POST /api/chat/profiles/{slug}/versions/{version}/restore"].startswith(
        "Write version n's content as a new version"
    )
