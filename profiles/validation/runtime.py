"""A profile's runtime (system prompt, middleware chain, tools, engine settings), checked against the
definitions the apps registered, with JSON-schema errors turned into field paths."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.validators import extend

from ..definitions import Definitions
from ..definitions import definitions as default_definitions
from ..errors import Errors
from .text import storable_errors

RUNTIME_KEYS = ("system_prompt", "middlewares", "tools", "step_settings_patch")
MIDDLEWARE_ENTRY_KEYS = ("name", "id", "enabled", "config")
MAX_SYSTEM_PROMPT = 20_000


# JSON schema helpers


def _fill_defaults(validator_class):
    """A validator that fills `default` values into the instance while it validates."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return extend(validator_class, {"properties": set_defaults})


DefaultFillingValidator = _fill_defaults(Draft202012Validator)


def _json_path(prefix: str, error: ValidationError) -> str:
    path = prefix
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra:
            path += f".{extra[0]}"
    if error.validator == "required":
        match = re.search(r"'([^']+)' is a required property", error.message)
        if match:
            path += f".{match.group(1)}"
    return path


def schema_errors(schema: Mapping[str, Any], instance: Any, prefix: str, *, fill_defaults: bool = False) -> Errors:
    cls = DefaultFillingValidator if fill_defaults else Draft202012Validator
    validator = cls(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    found = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    return [(_json_path(prefix, e), e.message) for e in found]


def validate_runtime(
    raw: Any, *, prefix: str = "runtime", defs: Definitions | None = None, check_sources: bool = True
) -> tuple[dict[str, Any], Errors]:
    """Return the canonical runtime (configs with defaults filled in) and the errors found.
    `check_sources`: tools from outside the process (MCP servers) must exist (writes); resolving a
    stored runtime passes False, so a server that went away never makes a profile unusable."""
    defs = defs or default_definitions
    errors: Errors = []
    if raw is None:
        return {}, errors
    if not isinstance(raw, Mapping):
        return {}, [(prefix, "must be an object")]
    unstorable = storable_errors(raw, field=prefix)
    if unstorable:  # first: the messages below would echo the text
        return {}, unstorable
    runtime: dict[str, Any] = {}
    for key in raw:
        if key not in RUNTIME_KEYS:
            errors.append((f"{prefix}.{key}", f"unknown runtime key; allowed: {', '.join(RUNTIME_KEYS)}"))

    prompt = raw.get("system_prompt")
    if prompt is not None:
        if not isinstance(prompt, str):
            errors.append((f"{prefix}.system_prompt", "must be a string"))
        elif len(prompt) > MAX_SYSTEM_PROMPT:
            errors.append((f"{prefix}.system_prompt", f"at most {MAX_SYSTEM_PROMPT} characters"))
        else:
            runtime["system_prompt"] = prompt

    if raw.get("middlewares") is not None:
        runtime["middlewares"] = _validate_middlewares(raw["middlewares"], f"{prefix}.middlewares", defs, errors)
    if raw.get("tools") is not None:
        runtime["tools"] = _validate_tools(raw["tools"], f"{prefix}.tools", defs, errors, check_sources=check_sources)
    if raw.get("step_settings_patch") is not None:
        runtime["step_settings_patch"] = validate_step_settings(
            raw["step_settings_patch"], f"{prefix}.step_settings_patch", defs, errors
        )
    return runtime, errors


def _validate_middlewares(raw: Any, path: str, defs: Definitions, errors: Errors) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        errors.append((path, "must be a list"))
        return []
    out: list[dict[str, Any]] = []
    seen_ids: dict[str, int] = {}
    names: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for i, entry in enumerate(raw):
        at = f"{path}[{i}]"
        if not isinstance(entry, Mapping):
            errors.append((at, "must be an object {name, id?, enabled?, config?}"))
            continue
        for key in entry:
            if key not in MIDDLEWARE_ENTRY_KEYS:
                errors.append((f"{at}.{key}", "unknown key; allowed: name, id, enabled, config"))
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            errors.append((f"{at}.name", "middleware name is required"))
            continue
        name = name.strip()
        definition = defs.middlewares.get(name)
        if definition is None:
            errors.append((f"{at}.name", f"unknown middleware {name!r}; known: {', '.join(sorted(defs.middlewares))}"))
            continue
        item: dict[str, Any] = {"name": name}
        if "id" in entry and entry["id"] is not None:
            mid = entry["id"]
            if not isinstance(mid, str) or not mid.strip():
                errors.append((f"{at}.id", "id must be a non-blank string"))
            else:
                mid = mid.strip()
                if mid in seen_ids:
                    errors.append((f"{at}.id", f"duplicate middleware id {mid!r} (also at [{seen_ids[mid]}])"))
                seen_ids[mid] = i
                item["id"] = mid
        enabled = entry.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            errors.append((f"{at}.enabled", "must be true, false or null"))
        elif enabled is False:
            item["enabled"] = False
        config = entry.get("config")
        config = {} if config is None else config
        if not isinstance(config, Mapping):
            errors.append((f"{at}.config", "must be an object"))
        else:
            config = copy.deepcopy(dict(config))
            found = schema_errors(definition.schema, config, f"{at}.config", fill_defaults=True)
            errors.extend(found)
            extra_check = getattr(definition.factory, "validate_config", None)
            if not found and callable(extra_check):
                errors.extend((f"{at}.config.{p}", m) for p, m in extra_check(config))
            item["config"] = config
        names.setdefault(name, []).append((i, item))
        out.append(item)
    for name, entries in names.items():
        if len(entries) > 1:
            errors.extend(
                (f"{path}[{i}].id", f"middleware {name!r} is used more than once: each needs an id")
                for i, item in entries
                if "id" not in item
            )
    return out


def _validate_tools(raw: Any, path: str, defs: Definitions, errors: Errors, *, check_sources: bool) -> list[str]:
    """An exact allow-list of tool names: the process's own, or a source's (`mcp:<server>/<tool>`), which
    must exist when `check_sources` (a write); a stored runtime keeps a name whose server went away."""
    if not isinstance(raw, list):
        errors.append((path, "must be a list of tool names"))
        return []
    out: list[str] = []
    at: dict[str, str] = {}
    for i, name in enumerate(raw):
        if not isinstance(name, str) or not name.strip():
            errors.append((f"{path}[{i}]", "tool name is required"))
            continue
        name = name.strip()
        source = defs.tool_source(name)
        problem = source.check(name) if source is not None else None
        if problem:
            errors.append((f"{path}[{i}]", problem))
        elif source is None and name not in defs.tools:
            errors.append((f"{path}[{i}]", f"unknown tool {name!r}; known: {', '.join(sorted(defs.tools))}"))
        elif name in out:
            errors.append((f"{path}[{i}]", f"tool {name!r} is listed twice"))
        else:
            out.append(name)
            if source is not None:
                at[name] = f"{path}[{i}]"
    if check_sources and at:
        problems = {name: found for name, found in defs.source_tools(at).items() if isinstance(found, str)}
        errors.extend((where, problems[name]) for name, where in at.items() if name in problems)
    return out


def validate_step_settings(raw: Any, path: str, defs: Definitions, errors: Errors) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, Mapping):
        errors.append((path, "must be an object: section -> field -> value"))
        return {}
    sections = defs.step_setting_sections()
    out: dict[str, dict[str, Any]] = {}
    for section, fields in raw.items():
        at = f"{path}.{section}"
        if section not in sections:
            errors.append((at, f"unknown section; known: {', '.join(sorted(sections))}"))
            continue
        if not isinstance(fields, Mapping):
            errors.append((at, "must be an object: field -> value"))
            continue
        for name, value in fields.items():
            setting = defs.step_settings.get((section, name))
            if setting is None:
                known = ", ".join(s.field for s in sections[section])
                errors.append((f"{at}.{name}", f"unknown field; known: {known}"))
            elif setting.secret:
                errors.append(
                    (f"{at}.{name}", "secrets are never stored in a profile: set them in the server's environment")
                )
            elif value is not None:
                found = schema_errors(setting.json_schema(), value, f"{at}.{name}")
                if found:
                    errors.extend(found)
                else:
                    out.setdefault(section, {})[name] = value
    return out
