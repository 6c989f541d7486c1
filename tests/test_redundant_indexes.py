"""No index is the leading part of another index of its table: every row written updates each index, and
a query that could use the shorter one can use the longer (its leading columns) as well."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection

pytestmark = [pytest.mark.django_db, pytest.mark.backends]

OUR_APPS = ("profiles", "chat", "inventory")


def indexes_of(model) -> dict[str, tuple[str, ...]]:
    """The table's indexes as the database has them, but partial ones (a condition: they serve only
    their rows, so they cover no other index)."""
    partial = {c.name for c in [*model._meta.constraints, *model._meta.indexes] if getattr(c, "condition", None)}
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return {
        name: tuple(info["columns"])
        for name, info in constraints.items()
        if (info["index"] or info["unique"]) and not info["primary_key"] and info["columns"] and name not in partial
    }


def redundant(indexes: dict[str, tuple[str, ...]]) -> list[str]:
    return sorted(
        f"{name} {columns} is the leading part of {other} {longer}"
        for name, columns in indexes.items()
        for other, longer in indexes.items()
        if other != name and len(longer) > len(columns) and longer[: len(columns)] == columns
    )


def test_no_index_of_our_tables_is_the_leading_part_of_another():
    found = []
    for app in OUR_APPS:
        for model in apps.get_app_config(app).get_models():
            found += redundant(indexes_of(model))
    assert found == [], "\n".join(found)
