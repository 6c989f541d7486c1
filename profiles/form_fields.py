"""Form fields of the admin: JSON edited in a textarea (formatted, checked as you type), group names."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError


class JSONEditorWidget(forms.Textarea):
    """A textarea showing JSON indented by 2; `json_editor.js` validates it as you type and formats it."""

    class Media:
        css = {"all": ("profiles/json_editor.css",)}
        js = ("profiles/json_editor.js",)

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        defaults = {"rows": 14, "class": "vLargeTextField json-editor", "spellcheck": "false", "data-json-editor": ""}
        super().__init__({**defaults, **(attrs or {})})

    def format_value(self, value: Any) -> str | None:
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return value  # what the user typed, so they can fix it
        return json.dumps(value, indent=2, ensure_ascii=False)


class JSONObjectField(forms.JSONField):
    """JSON text -> Python value. Empty means `{}` (`[]` for a list field); invalid JSON says where it broke.

    The shape (object, keys, schemas) is the service's business, so it is not checked here.
    """

    widget = JSONEditorWidget
    empty: Any = {}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> Any:
        if value in self.empty_values:
            return type(self.empty)()
        if isinstance(value, str):
            try:
                json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValidationError(
                    "Invalid JSON: %(reason)s (line %(line)s, column %(column)s)",
                    code="invalid",
                    params={"reason": exc.msg, "line": exc.lineno, "column": exc.colno},
                ) from None
        return super().to_python(value)


class JSONListField(JSONObjectField):
    """JSON text of a list; empty means `[]`."""

    empty: Any = []


class GroupNamesField(forms.CharField):
    """Django group names, comma-separated (names may hold spaces) -> a list. A name no group has matches
    nobody; `offer` lists the existing groups in the help text, so a typo is visible."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)
        self.base_help = self.help_text

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(value) if isinstance(value, (list, tuple)) else value

    # A CharField that cleans to a list of names: the stubs type CharField.to_python as str | None.
    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, (list, tuple)):
            return [str(v).strip() for v in value if str(v).strip()]
        text = super().to_python(value) or ""
        return [name.strip() for name in text.split(",") if name.strip()]

    def has_changed(self, initial: Any, data: Any) -> bool:
        return sorted(self.to_python(initial or [])) != sorted(self.to_python(data))

    def offer(self) -> None:
        names = ", ".join(Group.objects.order_by("name").values_list("name", flat=True)) or "none yet"
        self.help_text = f"{self.base_help} Comma-separated. Existing groups: {names}."
