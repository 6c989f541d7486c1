"""YAML import and export of registries in the reference format.

Import is all-or-nothing (one transaction through the same services as the API) and every error
names the file, the line and the field path. Export writes atomically and round-trips.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.db import transaction

from . import selectors, services
from .errors import ProfileError
from .models import Profile, Registry
from .validation import canonical_slug, validate_profile_content

PROFILE_KEYS = {"slug", "display_name", "description", "runtime", "policy", "extensions"}
REGISTRY_KEYS = {"slug", "display_name", "description", "default_profile_slug", "profiles"}


class ImportFailed(Exception):
    """Carries `file:line: path: reason`; nothing was written."""


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.deleted)} deleted"
        )


class _Lines:
    """Maps a field path (`registries.x.profiles.y.runtime.tools[0]`, `extensions[a.b@v1].items[1]`)
    to its line in the YAML file. Keys may contain dots (slugs like `v1.2`, extension keys), so the
    walk matches the longest key of each mapping rather than splitting on dots."""

    def __init__(self, node: yaml.Node | None) -> None:
        self.root = node

    def line(self, path: str) -> int:
        node = self.root
        line = node.start_mark.line + 1 if node is not None else 1
        rest = path
        while rest and node is not None:
            if rest.startswith("["):
                token, rest = rest[1 : rest.index("]")], rest[rest.index("]") + 1 :]
                node = self._child(node, token)
            else:
                rest = rest.removeprefix(".")
                node, rest = self._longest_key(node, rest)
            if node is not None:
                line = node.start_mark.line + 1
        return line

    @staticmethod
    def _child(node: yaml.Node, token: str) -> yaml.Node | None:
        if isinstance(node, yaml.SequenceNode) and token.isdigit():
            index = int(token)
            return node.value[index] if index < len(node.value) else None
        if isinstance(node, yaml.MappingNode):
            return next((v for k, v in node.value if str(k.value).strip().lower() == token.lower()), None)
        return None

    @staticmethod
    def _longest_key(node: yaml.Node, rest: str) -> tuple[yaml.Node | None, str]:
        if not isinstance(node, yaml.MappingNode):
            return None, rest
        best = None
        for key, value in node.value:
            name = str(key.value).strip().lower()
            matches = rest.lower() == name or rest.lower().startswith((name + ".", name + "["))
            if matches and (best is None or len(name) > len(best[0])):
                best = (name, value)
        if best is None:
            return None, rest
        return best[1], rest[len(best[0]) :]


def _reason(exc: ProfileError) -> str:
    """The message without its field path (the import error names the full path itself)."""
    errors = getattr(exc, "errors", None)
    return errors[0][1] if errors else exc.message


def _load(text: str, label: str) -> tuple[Any, _Lines]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise ImportFailed(f"{label}:{line}: malformed YAML: {getattr(exc, 'problem', exc)}") from None
    return data, _Lines(node)


def _registries(data: Any) -> tuple[dict[str, Any], str]:
    """Accept `registries: {...}` or a single registry document; return (registries, path prefix)."""
    if not isinstance(data, dict):
        raise ProfileError("the document must be a mapping with `registries` or a single registry", field="")
    if "registries" in data:
        regs = data["registries"]
        if not isinstance(regs, dict):
            raise ProfileError("must be a mapping of registry slug -> registry", field="registries")
        return regs, "registries."
    if "slug" not in data:
        raise ProfileError("a single registry document needs a `slug`", field="slug")
    return {data["slug"]: data}, ""


def _check_keys(obj: Any, allowed: set[str], path: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ProfileError("must be a mapping", field=path)
    for key in obj:
        if key not in allowed:
            raise ProfileError(f"unknown key {key!r}; allowed: {', '.join(sorted(allowed))}", field=f"{path}.{key}")
    return obj


def import_text(text: str, *, label: str, replace: bool = False, source: str = "import") -> ImportReport:
    data, lines = _load(text, label)
    try:
        with transaction.atomic():
            regs, prefix = _registries(data)
            report = ImportReport()
            for raw_slug, reg in regs.items():
                path = f"{prefix}{raw_slug}" if prefix else ""
                _import_registry(raw_slug, reg, path, replace=replace, source=source, report=report)
            return report
    except ProfileError as exc:
        where = exc.field or ""
        raise ImportFailed(f"{label}:{lines.line(where)}: {where or '(document)'}: {exc.message}") from None


def _import_registry(raw_slug: str, reg: Any, path: str, *, replace: bool, source: str, report: ImportReport) -> None:
    def at(sub: str) -> str:
        return f"{path}.{sub}" if path else sub

    reg = _check_keys(reg or {}, REGISTRY_KEYS, path or "registry")
    try:
        slug = canonical_slug(reg.get("slug", raw_slug), field="slug")
    except ProfileError as exc:
        raise ProfileError(_reason(exc), field=at("slug")) from None
    registry = Registry.objects.filter(slug=slug).first()
    created_registry = registry is None
    # The same defaults on create and on replace, so re-importing an unchanged file changes nothing.
    names = {"display_name": reg.get("display_name") or slug, "description": reg.get("description") or ""}
    if registry is None:
        registry = services.registry_create(slug=slug, **names)
    elif replace:
        services.registry_update(slug=slug, **names)
    profiles = reg.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise ProfileError("must be a mapping of profile slug -> profile", field=at("profiles"))
    seen: set[str] = set()
    for raw_profile_slug, body in profiles.items():
        ppath = at(f"profiles.{raw_profile_slug}")
        body = _check_keys(body or {}, PROFILE_KEYS, ppath)
        try:
            pslug = canonical_slug(body.get("slug", raw_profile_slug), field="slug")
            seen.add(pslug)
            content = {k: body.get(k) for k in ("runtime", "policy", "extensions")}
            # The same defaults as on create, so re-importing an unchanged file changes nothing.
            text = {"display_name": body.get("display_name") or pslug, "description": body.get("description") or ""}
            existing = Profile.objects.filter(registry=registry, slug=pslug).first()
            label = f"{slug}/{pslug}"
            if existing is None:
                services.profile_create(registry_slug=slug, slug=pslug, source=source, **text, **content)
                report.created.append(label)
            elif replace:
                before = existing.version
                updated = services.profile_update(
                    registry_slug=slug, slug=pslug, changes={**text, **content}, source=source, change="imported"
                )
                (report.updated if updated.version != before else report.unchanged).append(label)
            else:
                # Kept as stored, but a file that holds an invalid profile is refused all the same.
                validate_profile_content(**content)
                report.unchanged.append(label)
        except ProfileError as exc:
            raise ProfileError(_reason(exc), field=f"{ppath}.{exc.field}" if exc.field else ppath) from None
    default_slug = reg.get("default_profile_slug")
    try:
        if default_slug and (replace or created_registry):
            services.registry_set_default(registry_slug=slug, slug=default_slug)
        elif default_slug:  # kept as stored, but it must name a profile
            selectors.profile_get(registry=registry, slug=default_slug)
    except ProfileError as exc:
        raise ProfileError(_reason(exc), field=at("default_profile_slug")) from None
    if replace:
        registry.refresh_from_db()
        for stale in Profile.objects.filter(registry=registry).exclude(slug__in=seen).order_by("slug"):
            if registry.default_profile_id == stale.pk:
                continue
            services.profile_delete(registry_slug=slug, slug=stale.slug)
            report.deleted.append(f"{slug}/{stale.slug}")


def import_file(path: str | Path, *, replace: bool = False, source: str = "import") -> ImportReport:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportFailed(f"{path}: cannot read: {exc}") from None
    return import_text(text, label=str(path), replace=replace, source=source)


# --------------------------------------------------------------------------- export


def export_data(*, registry: str | None = None) -> dict[str, Any]:
    registries = Registry.objects.select_related("default_profile").order_by("slug")
    if registry is not None:
        registries = registries.filter(slug=canonical_slug(registry, field="registry"))
    out: dict[str, Any] = {}
    for reg in registries:
        out[reg.slug] = {
            "slug": reg.slug,
            "display_name": reg.display_name,
            "description": reg.description,
            "default_profile_slug": reg.default_profile.slug if reg.default_profile_id else None,
            "profiles": {
                p.slug: {
                    "display_name": p.display_name,
                    "description": p.description,
                    "runtime": p.runtime,
                    "policy": p.policy,
                    "extensions": p.extensions,
                }
                for p in reg.profiles.order_by("slug")
            },
        }
    return {"registries": out}


def export_text(*, registry: str | None = None) -> str:
    return yaml.safe_dump(export_data(registry=registry), sort_keys=True, allow_unicode=True, default_flow_style=False)


def export_file(path: str | Path, *, registry: str | None = None) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    text = export_text(registry=registry)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
