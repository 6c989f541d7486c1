"""Admin forms that write through services, and those of registries and profiles.

`ServiceModelForm` is the one pattern every app's admin uses to write (the inventory's too): the
form's `_write()` calls ONE service during validation (`_post_clean`), the last point where a service
error can still become a form error on the right field. The admin runs the whole request in one
transaction and each service call is atomic, so an error leaves nothing behind; `save()` only hands
back the service's instance and `ServiceFormAdmin.save_model` saves nothing. The fields (JSON in a textarea, group
names) are in `profiles.form_fields`; what label inputs accept, as an HTML pattern, in `profiles.html_patterns`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, cast

from django import forms

from .errors import ProfileError, ReadOnly, VersionConflict
from .form_fields import GroupNamesField, JSONEditorWidget, JSONListField, JSONObjectField
from .html_patterns import LABEL_PATTERN
from .models import Profile, Registry
from .services import (
    EDITABLE_FIELDS,
    profile_create,
    profile_update,
    registry_create,
    registry_update,
)
from .validation import POLICY_KEYS

ADMIN_SOURCE = "admin"
_PATH_HEAD = re.compile(r"[.\[]")


# --------------------------------------------------------------------------- service errors on forms


def add_service_error(
    form: forms.BaseForm, exc: ProfileError, *, what: str, aliases: dict[str, str] | None = None
) -> None:
    """Attach each error to the field its path starts with, keeping the full path in the message.

    `runtime.middlewares[0].config.max_turns` lands on `runtime`, `extensions[x.y@v0]` on `extensions`;
    paths without a matching form field, read-only refusals and version conflicts are non-field errors.
    """
    if isinstance(exc, VersionConflict):
        actual = exc.extra.get("actual")
        form.add_error(None, f"someone else changed this {what} (now version {actual}); reload")
        return
    pairs: list[tuple[str | None, str]] = list(getattr(exc, "errors", None) or [(exc.field, exc.message)])
    for path, message in pairs:
        head = _PATH_HEAD.split(path, maxsplit=1)[0] if path else ""
        head = (aliases or {}).get(head, head)
        target = head if head in form.fields and not isinstance(exc, ReadOnly) else None
        form.add_error(target, f"{path}: {message}" if path else message)


class ServiceModelForm(forms.ModelForm):
    """A ModelForm whose `_write()` (each subclass defines it: call the one service that writes the
    validated form and return its instance) performs the write; its domain errors become form errors.
    The admin never saves the instance itself."""

    actor: Any = None  # the acting user, set per request by the ModelAdmin's get_form()
    what = "object"
    error_aliases: dict[str, str] = {}
    _write: Callable[[], Any]  # declared for the type checker only: each subclass defines the method

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]  # Django's private hook, absent from django-stubs
        if self.errors:
            return
        try:
            self.instance = self._write()
        except ProfileError as exc:
            add_service_error(self, exc, what=self.what, aliases=self.error_aliases)

    def save(self, commit: bool = True) -> Any:
        """The service wrote everything during validation: return its instance, never `instance.save()`."""
        if self.errors:
            raise ValueError(f"The {self.what} could not be saved because the data didn't validate.")
        return self.instance

    def save_m2m(self) -> None:
        """No many-to-many fields; defined because the admin calls it after `save(commit=False)`."""


class VersionedServiceForm(ServiceModelForm):
    """For a model with a `version`: carries the version the form was loaded with for the service to check."""

    expected_version = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            # The version the form was loaded with: a write against a newer one is a conflict.
            self.initial.setdefault("expected_version", self.instance.version)
            self.fields["expected_version"].required = True
        else:
            self.fields.pop("expected_version")


# --------------------------------------------------------------------------- profiles


class ProfileAdminForm(VersionedServiceForm):
    """Create through `profile_create`, edit through `profile_update` with only the changed fields."""

    runtime = JSONObjectField(help_text="system_prompt, middlewares, tools, step_settings_patch")
    policy = JSONObjectField(help_text=", ".join(POLICY_KEYS))
    extensions = JSONObjectField(help_text="extension key (namespace.feature@vN) -> value")
    stack = JSONListField(
        help_text='Base layers applied in order before this profile: [{"registry"?, "slug", "version"?}] '
        "(registry: this one when absent; version: the latest when absent).",
        widget=JSONEditorWidget(attrs={"rows": 5}),
    )
    visible_to_groups = GroupNamesField(
        label="Visible to groups",
        help_text="Only members of these groups (and staff editors) see and use it; none: everyone.",
    )
    set_default = forms.BooleanField(required=False, label="Make this the registry default")

    what = "profile"

    class Meta:
        model = Profile
        fields = ("registry", "slug", *EDITABLE_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(GroupNamesField, self.fields["visible_to_groups"]).offer()
        if self.instance.pk is not None:
            # A profile is identified by registry + slug: neither can change once it exists.
            for name in ("registry", "slug"):
                self.fields.pop(name, None)
            if self.instance.registry.is_default(self.instance.pk):
                self.fields["set_default"].help_text = "This profile is already the registry default."

    def _write(self) -> Profile:
        data = self.cleaned_data
        content = {name: data[name] for name in EDITABLE_FIELDS if name in data}
        if self.instance.pk is None:
            if not (content.get("display_name") or "").strip():
                content.pop("display_name", None)  # a new profile left unnamed is named by its slug
            return profile_create(
                registry_slug=data["registry"].slug,
                slug=data["slug"],
                **content,
                set_default=data["set_default"],
                actor=self.actor,
                source=ADMIN_SOURCE,
            )
        # Only the changed parts: a read-only profile may still become the default without a change.
        return profile_update(
            registry_slug=self.instance.registry.slug,
            slug=self.instance.slug,
            changes={name: value for name, value in content.items() if name in self.changed_data},
            expected_version=data["expected_version"],
            set_default=data["set_default"],
            actor=self.actor,
            source=ADMIN_SOURCE,
        )


# --------------------------------------------------------------------------- registries


class ProfileSlugChoiceField(forms.ModelChoiceField):
    """Labels a registry's own profiles by slug (no query per option for the registry)."""

    def label_from_instance(self, obj: Profile) -> str:
        return f"{obj.slug} ({obj.display_name})" if obj.display_name and obj.display_name != obj.slug else obj.slug


class RegistryAdminForm(VersionedServiceForm):
    """Create through `registry_create`; edit the text, the default, the label settings, the editor groups
    and the group defaults through `registry_update` (guarded by the registry version the form was loaded
    with; only the registry's editors may)."""

    default_profile = ProfileSlugChoiceField(queryset=Profile.objects.none(), required=False)
    protected_labels = forms.CharField(
        required=False,
        initial="production",
        help_text="Label names, comma-separated, that only users with the promote permission may move.",
    )
    serve_label = forms.CharField(
        required=False,
        widget=forms.TextInput(attrs={"pattern": LABEL_PATTERN}),
        help_text="When set, a plain profile selection serves the version under this label (else the latest).",
    )
    editor_groups = GroupNamesField(
        help_text="Only members of these groups (with the profile permissions) and superusers may edit this "
        "registry's profiles; none: whoever has the permissions."
    )
    group_defaults = JSONListField(
        help_text="Each group's default profile, in order (the first group a user is in wins): "
        '[{"group": "support", "profile": "support"}]. A user\'s own selection comes first; '
        "users in none of these groups get the registry default.",
        widget=JSONEditorWidget(attrs={"rows": 5}),
    )
    required_approvals = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=10,
        initial=0,
        help_text="With n > 0, protected labels move only through requests approved by n approvers (lowering it "
        "needs a superuser).",
    )
    approver_groups = GroupNamesField(
        help_text="Members of these groups (and superusers) approve label requests; never their own."
    )

    what = "registry"
    error_aliases = {"registry": "slug"}

    class Meta:
        model = Registry
        fields = ("slug", "display_name", "description", "default_profile", "serve_label")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(GroupNamesField, self.fields["editor_groups"]).offer()
        cast(GroupNamesField, self.fields["approver_groups"]).offer()
        if self.instance.pk is not None:
            self.initial["protected_labels"] = ", ".join(self.instance.protected_labels or [])
            self.initial["editor_groups"] = list(self.instance.editor_groups or [])
            self.initial["group_defaults"] = list(self.instance.group_defaults or [])
            self.initial["required_approvals"] = self.instance.required_approvals
            self.initial["approver_groups"] = list(self.instance.approver_groups or [])
        if self.instance.pk is None:
            self.fields.pop("default_profile", None)  # a new registry has no profiles yet
            self.fields.pop("group_defaults", None)  # nor profiles to name
            self.fields.pop("required_approvals", None)  # set once it has labels to guard
            self.fields.pop("approver_groups", None)
            return
        self.fields.pop("slug", None)
        if "default_profile" in self.fields:
            own = Profile.objects.filter(registry=self.instance).order_by("slug")
            field = cast(ProfileSlugChoiceField, self.fields["default_profile"])
            field.queryset = own
            # Invariant: a registry with profiles has a default, so it cannot be cleared.
            field.required = own.exists()
            if field.required:
                field.empty_label = None
            field.help_text = "One of this registry's own profiles."

    def _write(self) -> Registry:
        data = self.cleaned_data
        labels: dict[str, Any] = {
            "protected_labels": [n for n in (data.get("protected_labels") or "").replace(",", " ").split() if n],
            "serve_label": data.get("serve_label") or "",
        }
        if self.instance.pk is None:
            return registry_create(
                slug=data["slug"],
                display_name=data["display_name"],
                description=data["description"],
                editor_groups=data.get("editor_groups") or [],
                actor=self.actor,
                source=ADMIN_SOURCE,
                **labels,
            )
        if not self.has_changed():
            return self.instance
        default = data.get("default_profile")
        access = {
            name: data[name] if data[name] is not None else 0
            for name in ("editor_groups", "group_defaults", "required_approvals", "approver_groups")
            if name in self.changed_data
        }
        return registry_update(
            slug=self.instance.slug,
            display_name=data["display_name"],
            description=data["description"],
            default_profile=default.slug if default is not None else None,
            expected_version=data["expected_version"],
            actor=self.actor,
            source=ADMIN_SOURCE,
            **labels,
            **access,
        )
