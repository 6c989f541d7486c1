"""One representation of time in every model: integer milliseconds since the Unix epoch, `*_ms`.

Why integers: the API, the websocket frames and the turn records already speak `*_ms`, so models
that store the same value need no conversion between layers, and SQLite and PostgreSQL store it the
same way. Calendar dates that are business data (a sale's `date`) stay dates.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from django.db import models


def now_ms() -> int:
    """Now, in epoch milliseconds (the default of every `*_ms` creation stamp)."""
    return time.time_ns() // 1_000_000


def to_ms(moment: datetime) -> int:
    """An aware datetime in epoch milliseconds."""
    return int(moment.timestamp() * 1000)


def from_ms(ms: int | None) -> datetime | None:
    """An aware UTC datetime for display (the admin); None stays None."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


class CreatedMs(models.Model):
    created_at_ms = models.BigIntegerField(default=now_ms, editable=False)

    class Meta:
        abstract = True


class TimestampedMs(CreatedMs):
    """`created_at_ms` and `updated_at_ms`; every ORM save stamps `updated_at_ms` (like `auto_now`).
    Bulk `.update()` calls set it themselves."""

    updated_at_ms = models.BigIntegerField(default=now_ms, editable=False)

    class Meta:
        abstract = True

    def save(self, *args, **kwargs) -> None:
        self.updated_at_ms = now_ms()
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            kwargs["update_fields"] = {*update_fields, "updated_at_ms"}
        super().save(*args, **kwargs)


def datetimes_to_ms(app_label: str, fields: dict[str, list[str]]):
    """A migration step that copies each `<name>` datetime column into its new `<name>_ms` column.

    Row by row in Python, so it is the same on SQLite and PostgreSQL (the tables it ran on were small)."""
    from django.db import migrations

    def forwards(apps, schema_editor) -> None:
        for model_name, names in fields.items():
            model = apps.get_model(app_label, model_name)
            for row in model.objects.only("pk", *names).iterator():
                values = {f"{n}_ms": to_ms(getattr(row, n)) for n in names if getattr(row, n)}
                model.objects.filter(pk=row.pk).update(**values)

    def backwards(apps, schema_editor) -> None:
        for model_name, names in fields.items():
            model = apps.get_model(app_label, model_name)
            for row in model.objects.only("pk", *(f"{n}_ms" for n in names)).iterator():
                model.objects.filter(pk=row.pk).update(**{n: from_ms(getattr(row, f"{n}_ms")) for n in names})

    return migrations.RunPython(forwards, backwards)
