"""Project invariants as Django system checks (`manage.py check`, and `--database default` for data)."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, Tags, register
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from .definitions import definitions


@register()
def check_definitions(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Every registered schema must itself be valid, and every definition must be runnable."""
    errors: list[Error] = []
    schemas = [(f"middleware {d.name}", d.schema) for d in definitions.middlewares.values()]
    schemas += [(f"tool {t.name}", t.parameters) for t in definitions.tools.values()]
    schemas += [(f"extension {c.key}", c.schema) for c in definitions.extensions.values()]
    for label, schema in schemas:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            errors.append(Error(f"{label} has an invalid JSON schema: {exc.message}", id="profiles.E001"))
    for definition in definitions.middlewares.values():
        if definition.factory is None:
            errors.append(Error(f"middleware {definition.name} has no implementation", id="profiles.E002"))
    for tool in definitions.tools.values():
        if tool.implementation is None or tool.mounts == frozenset():
            errors.append(Error(f"tool {tool.name} has no implementation or no mount", id="profiles.E003"))
        if tool.writes and not tool.permission:
            errors.append(Error(f"writing tool {tool.name} declares no permission", id="profiles.E004"))
    return errors


@register(Tags.database)
def check_default_profiles(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[Error]:
    """A registry with profiles has a default that is one of its own profiles."""
    if not databases:
        return []
    from django.db import connection
    from django.db.models import Count

    from .models import Registry

    if Registry._meta.db_table not in connection.introspection.table_names():
        return []  # `migrate` runs the checks before it creates the tables

    # Only the columns every migration state has: `migrate` runs this before it adds new ones.
    rows = (
        Registry.objects.values("slug", "pk", "default_profile__registry_id")
        .annotate(profile_count=Count("profiles"))
        .values_list("slug", "profile_count", "default_profile__registry_id", "pk")
    )
    return [
        Error(f"registry {slug} has profiles but no default of its own", id="profiles.E020")
        for slug, count, default_registry_id, pk in rows
        if count and default_registry_id != pk
    ]
