"""Time is stored one way in every model: epoch milliseconds in `*_ms` columns."""

from __future__ import annotations

import datetime as dt

import pytest
from django.apps import apps as live_apps
from django.db import connection, models
from django.db.migrations.executor import MigrationExecutor

from profiles.timestamps import from_ms, now_ms, to_ms

STAMPED = ("created_at", "updated_at", "started_at", "finished_at", "lease_until")


def test_no_model_stores_a_datetime_and_every_instant_is_an_integer_ms_column():
    offenders, stamps = [], []
    for model in live_apps.get_models():
        if model._meta.app_label not in ("chat", "profiles", "inventory"):
            continue
        for field in model._meta.concrete_fields:
            if isinstance(field, models.DateTimeField) and not field.name.startswith("history_"):
                offenders.append(f"{model._meta.label}.{field.name}")
            if field.name.removesuffix("_ms") in STAMPED:
                stamps.append(field)
    assert offenders == []  # simple_history's own `history_date` is the library's, not ours
    assert stamps and all(f.name.endswith("_ms") and isinstance(f, models.BigIntegerField) for f in stamps)


def test_ms_round_trips_through_an_aware_datetime():
    moment = dt.datetime(2026, 2, 8, 12, 30, 15, 250000, tzinfo=dt.UTC)
    assert to_ms(moment) == 1770553815250
    assert from_ms(to_ms(moment)) == moment
    assert abs(now_ms() - to_ms(dt.datetime.now(dt.UTC))) < 5_000


@pytest.mark.django_db
def test_every_orm_save_stamps_updated_at_ms_even_with_update_fields():
    from profiles.models import Registry

    registry = Registry.objects.create(slug="stamped")
    registry.updated_at_ms = registry.created_at_ms = 1
    Registry.objects.filter(pk=registry.pk).update(updated_at_ms=1, created_at_ms=1)
    registry.description = "changed"
    registry.save(update_fields=["description"])
    stored = Registry.objects.get(pk=registry.pk)
    assert stored.created_at_ms == 1  # creation stays
    assert stored.updated_at_ms > 1_700_000_000_000


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_existing_datetimes_as_ms():
    executor = MigrationExecutor(connection)
    executor.migrate([("profiles", "0001_initial")])
    old = executor.loader.project_state([("profiles", "0001_initial")]).apps
    created = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
    registry = old.get_model("profiles", "Registry").objects.create(slug="old")
    old.get_model("profiles", "Registry").objects.filter(pk=registry.pk).update(created_at=created, updated_at=created)

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    from profiles.models import Registry

    migrated = Registry.objects.get(slug="old")
    assert (migrated.created_at_ms, migrated.updated_at_ms) == (to_ms(created), to_ms(created))
