"""What the admins share: timestamps shown as local times, JSON shown pretty, and the bases of the
admins that write through a service (`ServiceFormAdmin`, `ServiceAdmin`) or only look (`InspectOnlyAdmin`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin
from django.forms import ModelForm
from django.http import HttpRequest
from django.utils import formats, timezone
from django.utils.html import format_html

from ..access import can_edit
from ..forms import ServiceModelForm
from ..models import Registry
from ..timestamps import from_ms

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec as Fieldsets


def _when(ms: int | None) -> str | None:
    """Milliseconds as a local date and time; a string, because read-only fields print datetimes raw."""
    moment = from_ms(ms) if ms else None
    return formats.localize(timezone.localtime(moment)) if moment else None


class TimestampsAdmin(admin.ModelAdmin):
    """`created` and `updated` columns and read-only fields for models stamped in `*_ms` (any app's)."""

    @admin.display(description="created", ordering="created_at_ms")
    def created(self, obj: Any) -> str | None:
        return _when(obj.created_at_ms)

    @admin.display(description="updated", ordering="updated_at_ms")
    def updated(self, obj: Any) -> str | None:
        return _when(obj.updated_at_ms)


def _pretty_json(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


class ServiceFormAdmin(TimestampsAdmin):
    """Every admin that writes (any app's): its `ServiceModelForm` writes through a service, with the
    acting user; the admin saves nothing itself."""

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> type[ModelForm]:
        # ModelAdmin.get_form() subclasses `self.form`, a ServiceModelForm in every admin built on this one.
        form = cast("type[ServiceModelForm]", super().get_form(request, obj, change=change, **kwargs))
        form.actor = request.user  # a fresh class per call, so this is per request
        return form

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Nothing to do: the service already wrote `obj` while the form was validated."""


class ServiceAdmin(ServiceFormAdmin):
    """The registry and profile admins: versioned objects with identity fields fixed after creation."""

    add_fieldsets: Fieldsets = ()
    identity_fields: tuple[str, ...] = ()  # editable on create only
    form_only_fields: tuple[str, ...] = ("expected_version",)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Fieldsets:
        if obj is None:
            return self.add_fieldsets
        fieldsets = super().get_fieldsets(request, obj)  # the class's `fieldsets`
        if self.has_change_permission(request, obj):
            return fieldsets
        # A view-only page renders model values: inputs that exist only on the form have none.
        return tuple(
            (name, {**options, "fields": tuple(f for f in options["fields"] if f not in self.form_only_fields)})
            for name, options in fieldsets
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return tuple(self.readonly_fields) if obj is None else (*self.identity_fields, *self.readonly_fields)

    @staticmethod
    def registry_of(obj: Any) -> Registry:
        return obj if isinstance(obj, Registry) else obj.registry

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """The model permission, and for one object the registry's editor groups (`profiles.access`)."""
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or can_edit(request.user, self.registry_of(obj)))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or can_edit(request.user, self.registry_of(obj)))


class InspectOnlyAdmin(TimestampsAdmin):
    """Written only by the services (history, users' selections): the admin may look, never touch."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
