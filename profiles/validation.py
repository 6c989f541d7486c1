"""Validation and canonicalisation of everything a profile holds. Plain Python, no ORM.

Every write path (API, admin, import, seed, request overrides) goes through these functions so a
rule cannot be bypassed. Errors carry stable field paths such as `runtime.middlewares[1].id`.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.validators import extend

from .definitions import Definitions
from .definitions import definitions as default_definitions
from .errors import InvalidInput

Errors = list[tuple[str, str]]

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$")
EXTENSION_KEY_RE = re.compile(
    r"^(?P<ns>[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?)\.(?P<feature>[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?)@v(?P<n>[1-9][0-9]*)$"
)
RUNTIME_KEYS = ("system_prompt", "middlewares", "tools", "step_settings_patch")
POLICY_KEYS = ("allow_overrides", "allowed_override_keys", "denied_override_keys", "read_only", "value_bounds")
# policy.value_bounds: bounds on the engine-setting values a request override may choose (unset: the server's).
VALUE_BOUND_KEYS = ("api_types", "models", "max_timeout_seconds", "max_response_tokens")
MIDDLEWARE_ENTRY_KEYS = ("name", "id", "enabled", "config")
MAX_SYSTEM_PROMPT = 20_000
SIMPLE_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


LABEL_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
LATEST = "latest"  # the reserved label: always the newest version


def canonical_label(raw: Any, *, field: str = "name") -> str:
    """A label name a user may set: `[a-z][a-z0-9_-]{0,63}`, not the reserved `latest`."""
    name = raw.strip().lower() if isinstance(raw, str) else None
    if not name or not LABEL_RE.match(name):
        raise InvalidInput("a label is 1-64 characters of a-z, 0-9, '_', '-', starting with a letter", field=field)
    if name == LATEST:
        raise InvalidInput("'latest' is reserved: it always means the newest version", field=field)
    return name


@dataclass(frozen=True)
class ProfileRef:
    """How a profile is chosen: `slug` (follow the serving label or the latest), `slug@3` (pinned to a
    version) or `slug@production` (follow a label; `slug@latest` follows the newest version)."""

    slug: str
    version: int | None = None
    label: str | None = None

    @property
    def at(self) -> str:
        """What follows `@` ("" for a plain slug): what selections store next to the slug."""
        return str(self.version) if self.version is not None else (self.label or "")

    @property
    def mode(self) -> str:
        """`pinned` (a version), `label` (a label) or `follow` (a plain slug)."""
        return "pinned" if self.version is not None else "label" if self.label else "follow"

    def __str__(self) -> str:
        return f"{self.slug}@{self.at}" if self.at else self.slug


def parse_profile_ref(raw: Any, *, field: str = "profile", at: str = "") -> ProfileRef:
    """`agent`, `agent@3`, `agent@production` (or a slug and a stored `at`) -> ProfileRef; 400 otherwise."""
    if not isinstance(raw, str):
        raise InvalidInput("must be a profile slug, slug@version or slug@label", field=field)
    slug_part, sep, selector = raw.partition("@")
    slug = canonical_slug(slug_part, field=field)
    if not sep:
        selector = at
    elif at:
        raise InvalidInput("the ref already names a version or label", field=field)
    selector = selector.strip().lower()
    if sep and not selector:
        raise InvalidInput("expected a version number or a label name after '@'", field=field)
    if not selector:
        return ProfileRef(slug)
    if selector.isdigit():
        return ProfileRef(slug, version=parse_version(selector, field=field))
    if not LABEL_RE.match(selector):
        raise InvalidInput(f"{selector!r} after '@' is neither a version number nor a label name", field=field)
    return ProfileRef(slug, label=selector)


def parse_version(value: Any, *, field: str) -> int:
    """A profile or registry version as a client sends it (an int, "3", or an ETag's `"3"`/`W/"3"`)."""
    text = value.strip().removeprefix("W/").strip('"') if isinstance(value, str) else value
    try:
        version = int(text)
    except (TypeError, ValueError):
        raise InvalidInput("must be a positive integer version", field=field) from None
    if version < 1 or isinstance(value, bool):
        raise InvalidInput("must be a positive integer version", field=field)
    return version


def canonical_slug(raw: Any, *, field: str = "slug") -> str:
    """Trim and lower-case; reject anything that is not 1-128 chars of [a-z0-9._-] with alnum ends."""
    if not isinstance(raw, str):
        raise InvalidInput("slug must be a string", field=field)
    slug = raw.strip().lower()
    if not slug:
        raise InvalidInput("slug is required", field=field)
    if not SLUG_RE.match(slug):
        raise InvalidInput(
            f"invalid slug {raw!r}: use 1-128 characters of a-z, 0-9, '.', '_', '-', starting and ending "
            "with a letter or digit",
            field=field,
        )
    return slug


def canonical_extension_key(raw: str) -> str | None:
    key = raw.strip().lower() if isinstance(raw, str) else ""
    return key if EXTENSION_KEY_RE.match(key) else None


def canonical_override_key(raw: str) -> str:
    """`systemPrompt`, `system-prompt`, ` System_Prompt ` -> `system_prompt`."""
    key = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", raw.strip())
    return key.replace("-", "_").lower()


# --------------------------------------------------------------------------- storable text


def _text_problem(text: str) -> str | None:
    """Why `text` cannot be stored or sent as UTF-8 JSON, or None."""
    nul = text.find("\x00")
    if text.isascii():
        return None if nul < 0 else f"contains a NUL character (U+0000) at position {nul}, which cannot be stored"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # only lone surrogates fail: every other code point has a UTF-8 form
        if nul < 0 or exc.start < nul:
            return (
                f"contains an unpaired UTF-16 surrogate (U+{ord(text[exc.start]):04X}) at position {exc.start}: "
                "text must be valid Unicode"
            )
    if nul >= 0:
        return f"contains a NUL character (U+0000) at position {nul}, which cannot be stored"
    return None


def _printable_key(key: str) -> str:
    """A dict key as it may appear in an error path: NUL, surrogates and other controls escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in key)


def _key_path(path: str, key: Any) -> str:
    key = _printable_key(str(key))
    if SIMPLE_KEY_RE.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key}]"


def storable_errors(value: Any, *, field: str) -> Errors:
    """The first (path, message) that makes `value` unstorable, as a list (empty when it is fine).

    Walks str, dict (keys and values), list and tuple values, iteratively (any depth). Refused: lone
    UTF-16 surrogates (no UTF-8 form: the JSON encoder and every database driver fail on them), NUL
    (PostgreSQL text and jsonb refuse it) and non-finite floats and decimals (NaN and Infinity are not
    JSON). Anything else (numbers, booleans, None) passes; types are the other validators' business.
    """
    stack: list[tuple[str, Any]] = [(field, value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            problem = _text_problem(node)
            if problem:
                return [(path, problem)]
        elif isinstance(node, float):
            if not math.isfinite(node):
                return [(path, f"must be a finite number, not {node!r}: JSON has no NaN or Infinity")]
        elif isinstance(node, Decimal):
            if not node.is_finite():
                return [(path, f"must be a finite number, not {node}: JSON has no NaN or Infinity")]
        elif isinstance(node, Mapping):
            children = []
            for key, item in node.items():
                at = _key_path(path, key)
                if isinstance(key, str):
                    problem = _text_problem(key)
                    if problem:
                        return [(at, f"key {problem}")]
                children.append((at, item))
            stack.extend(reversed(children))  # depth first, in document order
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{path}[{i}]", item) for i, item in reversed(list(enumerate(node))))
    return []


def ensure_storable(value: Any, *, field: str) -> Any:
    """Return `value` if every string, key and number in it can be stored and sent as JSON.

    The one check for "storable text" on every write path (profiles, inventory, and any app that
    stores client JSON). Raises InvalidInput with the dotted path of the first offending part, e.g.
    `runtime.system_prompt`, `extensions[acme.notes@v1].items[2]`; `field=""` makes a dict's keys the
    top-level field names.
    """
    errors = storable_errors(value, field=field)
    if errors:
        raise InvalidInput.from_errors(errors)
    return value


# --------------------------------------------------------------------------- JSON schema helpers


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


# --------------------------------------------------------------------------- runtime


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


# --------------------------------------------------------------------------- policy and extensions


def validate_policy(raw: Any, *, prefix: str = "policy") -> tuple[dict[str, Any], Errors]:
    errors: Errors = []
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        return {}, [(prefix, "must be an object")]
    unstorable = storable_errors(raw, field=prefix)
    if unstorable:
        return {}, unstorable
    for key in raw:
        if key not in POLICY_KEYS:
            errors.append((f"{prefix}.{key}", f"unknown policy key; allowed: {', '.join(POLICY_KEYS)}"))
    policy: dict[str, Any] = {}
    for flag in ("allow_overrides", "read_only"):
        value = raw.get(flag, False)
        if value is None:
            value = False
        if not isinstance(value, bool):
            errors.append((f"{prefix}.{flag}", "must be true or false"))
        policy[flag] = bool(value)
    for list_key in ("allowed_override_keys", "denied_override_keys"):
        value = raw.get(list_key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            errors.append((f"{prefix}.{list_key}", "must be a list of non-blank strings"))
            value = []
        policy[list_key] = sorted({canonical_override_key(v) for v in value})
    both = set(policy["allowed_override_keys"]) & set(policy["denied_override_keys"])
    if both:
        errors.append((f"{prefix}.override_keys", f"keys both allowed and denied: {', '.join(sorted(both))}"))
    bounds, bound_errors = validate_value_bounds(raw.get("value_bounds"), prefix=f"{prefix}.value_bounds")
    errors += bound_errors
    if bounds:  # stored only when set, so a profile without bounds keeps its stored shape
        policy["value_bounds"] = bounds
    return policy, errors


def validate_value_bounds(raw: Any, *, prefix: str) -> tuple[dict[str, Any], Errors]:
    """`{api_types?: [str], models?: [str], max_timeout_seconds?: number > 0, max_response_tokens?: int >= 1}`.

    Lists name the values a request may switch to ("*" = any; "" in models = the engine's default)."""
    if raw is None:
        return {}, []
    if not isinstance(raw, Mapping):
        return {}, [(prefix, "must be an object")]
    errors: Errors = [
        (f"{prefix}.{key}", f"unknown value bound; allowed: {', '.join(VALUE_BOUND_KEYS)}")
        for key in raw
        if key not in VALUE_BOUND_KEYS
    ]
    bounds: dict[str, Any] = {}
    for key in ("api_types", "models"):
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) and len(v) <= 200 for v in value):
            errors.append((f"{prefix}.{key}", "must be a list of strings"))
            continue
        cleaned = [v.strip().lower() if key == "api_types" else v.strip() for v in value]
        if key == "api_types" and not all(cleaned):
            errors.append((f"{prefix}.{key}", "must be a list of non-blank strings"))
            continue
        bounds[key] = sorted(set(cleaned))
    limits = (
        ("max_timeout_seconds", (int, float), lambda v: v > 0, "a number above 0"),
        ("max_response_tokens", (int,), lambda v: v >= 1, "an integer of at least 1"),
    )
    for key, kind, valid, what in limits:
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) or not valid(value):
            errors.append((f"{prefix}.{key}", f"must be {what}"))
            continue
        bounds[key] = value
    return bounds, errors


def validate_extensions(
    raw: Any, *, prefix: str = "extensions", defs: Definitions | None = None
) -> tuple[dict[str, Any], Errors]:
    """Canonicalise keys; validate known keys with their codec; keep unknown keys byte-for-byte.

    Storability (NUL, surrogates, NaN) is not checked here: the write services check it with
    `ensure_storable` before they call this."""
    defs = defs or default_definitions
    if raw is None:
        return {}, []
    if not isinstance(raw, Mapping):
        return {}, [(prefix, "must be an object: extension key -> value")]
    errors: Errors = []
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for raw_key, value in raw.items():
        key = canonical_extension_key(raw_key)
        if key is None:
            errors.append((f"{prefix}[{raw_key}]", "invalid extension key: use namespace.feature@vN"))
            continue
        if key in origin:
            errors.append((f"{prefix}[{raw_key}]", f"collides with {origin[key]!r} (both are {key!r})"))
            continue
        origin[key] = raw_key
        codec = defs.extensions.get(key)
        if codec is None:
            out[key] = value
            continue
        value = copy.deepcopy(value)
        found = schema_errors(codec.schema, value, f"{prefix}[{key}]", fill_defaults=True)
        if found:
            errors.extend(found)
            continue
        out[key] = codec.normalise(value) if codec.normalise else value
    return out, errors


def validate_profile_content(
    *, runtime: Any = None, policy: Any = None, extensions: Any = None, defs: Definitions | None = None
) -> dict[str, Any]:
    """Validate the three JSON parts together so one error report lists every problem."""
    rt, errors = validate_runtime(runtime, defs=defs)
    pol, perr = validate_policy(policy)
    ext, eerr = validate_extensions(extensions, defs=defs)
    errors = errors + perr + eerr
    if errors:
        raise InvalidInput.from_errors(errors)
    return {"runtime": rt, "policy": pol, "extensions": ext}


# --------------------------------------------------------------------------- access and stacks

MAX_GROUP_NAME = 150  # Django's Group.name
MAX_GROUPS = 100
# A profile's lineage holds at most this many base layers (its stack, their stacks, ...).
MAX_STACK_LAYERS = 8
STACK_ENTRY_KEYS = ("registry", "slug", "version")
GROUP_DEFAULT_KEYS = ("group", "profile")


def validate_group_names(raw: Any, *, field: str) -> tuple[list[str], Errors]:
    """A list of Django group names -> sorted, unique, trimmed names. None is the empty list."""
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], [(field, "must be a list of group names")]
    if len(raw) > MAX_GROUPS:
        return [], [(field, f"at most {MAX_GROUPS} groups")]
    names: set[str] = set()
    errors: Errors = []
    for i, value in enumerate(raw):
        name = value.strip() if isinstance(value, str) else None
        if not name:
            errors.append((f"{field}[{i}]", "a group name is a non-blank string"))
        elif len(name) > MAX_GROUP_NAME:
            errors.append((f"{field}[{i}]", f"at most {MAX_GROUP_NAME} characters"))
        else:
            names.add(name)
    return sorted(names), errors


def validate_stack(raw: Any, *, registry: str, field: str = "stack") -> tuple[list[dict[str, Any]], Errors]:
    """The shape of a stack: `[{registry?, slug, version?}]` -> entries with `registry` filled in (the
    profile's own when absent). Whether the layers exist, cycles and the lineage size are checked
    against the database (`profiles.selectors.stack_layers`)."""
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], [(field, "must be a list of {registry?, slug, version?}")]
    out: list[dict[str, Any]] = []
    errors: Errors = []
    for i, entry in enumerate(raw):
        at = f"{field}[{i}]"
        if not isinstance(entry, Mapping):
            errors.append((at, "must be an object {registry?, slug, version?}"))
            continue
        unknown = [key for key in entry if key not in STACK_ENTRY_KEYS]
        if unknown:
            errors.append((f"{at}.{unknown[0]}", f"unknown key; allowed: {', '.join(STACK_ENTRY_KEYS)}"))
            continue
        try:
            layer: dict[str, Any] = {
                "registry": canonical_slug(entry.get("registry") or registry, field=f"{at}.registry"),
                "slug": canonical_slug(entry.get("slug"), field=f"{at}.slug"),
            }
            if entry.get("version") is not None:
                if isinstance(entry["version"], bool) or not isinstance(entry["version"], (int, str)):
                    raise InvalidInput("must be a positive integer version", field=f"{at}.version")
                layer["version"] = parse_version(entry["version"], field=f"{at}.version")
        except InvalidInput as exc:
            errors.append((exc.field or at, exc.message))
            continue
        if any(layer == seen for seen in out):
            errors.append((at, "this layer is already in the stack"))
            continue
        out.append(layer)
    if len(out) > MAX_STACK_LAYERS:
        errors.append((f"{field}[{MAX_STACK_LAYERS}]", f"a lineage holds at most {MAX_STACK_LAYERS} base layers"))
    return out, errors


def validate_group_defaults(raw: Any, *, field: str = "group_defaults") -> tuple[list[dict[str, str]], Errors]:
    """`[{group, profile}]` in order (the first entry whose group a user is in wins). The profiles are
    checked against the registry by the service."""
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], [(field, "must be a list of {group, profile}")]
    out: list[dict[str, str]] = []
    errors: Errors = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(raw):
        at = f"{field}[{i}]"
        if not isinstance(entry, Mapping):
            errors.append((at, "must be an object {group, profile}"))
            continue
        unknown = [key for key in entry if key not in GROUP_DEFAULT_KEYS]
        if unknown:
            errors.append((f"{at}.{unknown[0]}", f"unknown key; allowed: {', '.join(GROUP_DEFAULT_KEYS)}"))
            continue
        groups, found = validate_group_names([entry.get("group")], field=f"{at}.group")
        if found:
            errors.append((f"{at}.group", found[0][1]))
            continue
        group = groups[0]
        if group in seen:
            errors.append((f"{at}.group", f"group {group!r} already has a default (at [{seen[group]}])"))
            continue
        try:
            profile = canonical_slug(entry.get("profile"), field=f"{at}.profile")
        except InvalidInput as exc:
            errors.append((exc.field or f"{at}.profile", exc.message))
            continue
        seen[group] = i
        out.append({"group": group, "profile": profile})
    return out, errors
