"""How an evaluation case is judged: the dataset's case shape and the deterministic scorers. Plain Python.

A case is `{"input", "expect"?: {"contains"?, "equals"?, "regex"?, "json_schema"?}, "judge"?: {"profile",
"criteria"}, "reference"?}`. Every expectation given must hold (`reasons` says which did not); the judge
(a profile asked for a JSON verdict) is run by the services and its verdict read by `judge_verdict`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

MAX_CASES = 500
MAX_PATTERN = 2_000
MAX_CRITERIA = 2_000
EXPECT_KEYS = ("contains", "equals", "regex", "json_schema")
CASE_KEYS = ("input", "expect", "judge", "reference")

Errors = list[tuple[str, str]]


def validate_cases(raw: Any, *, max_input: int, field: str = "cases") -> tuple[list[dict[str, Any]], Errors]:
    """The canonical cases and the errors found, each with its path (`cases[2].expect.regex`). `max_input`:
    a case's input is a turn's prompt, so the prompt limit of the app that runs it."""
    if not isinstance(raw, list):
        return [], [(field, "must be a list of cases")]
    if len(raw) > MAX_CASES:
        return [], [(field, f"at most {MAX_CASES} cases")]
    cases: list[dict[str, Any]] = []
    errors: Errors = []
    for i, case in enumerate(raw):
        checked = validate_case(case, at=f"{field}[{i}]", errors=errors, max_input=max_input)
        if checked is not None:
            cases.append(checked)
    return cases, errors


def validate_case(case: Any, *, at: str, errors: Errors, max_input: int) -> dict[str, Any] | None:
    """One case, canonical, its errors added to `errors` with paths under `at`."""
    if not isinstance(case, dict):
        errors.append((at, "must be an object with an input"))
        return None
    errors += [(f"{at}.{key}", f"unknown key; allowed: {', '.join(CASE_KEYS)}") for key in case if key not in CASE_KEYS]
    text = case.get("input")
    if not isinstance(text, str) or not text.strip() or len(text) > max_input:
        errors.append((f"{at}.input", f"a non-empty string of at most {max_input} characters"))
    out: dict[str, Any] = {"input": text}
    if case.get("expect") is not None:
        out["expect"] = _expect(case["expect"], f"{at}.expect", errors)
    if case.get("judge") is not None:
        out["judge"] = _judge(case["judge"], f"{at}.judge", errors)
    if case.get("reference") is not None:
        if not isinstance(case["reference"], str):
            errors.append((f"{at}.reference", "must be a string"))
        out["reference"] = case["reference"]
    return out


def _expect(raw: Any, at: str, errors: Errors) -> dict[str, Any]:
    if not isinstance(raw, dict) or not raw:
        errors.append((at, f"must be an object with one or more of {', '.join(EXPECT_KEYS)}"))
        return {}
    for key in raw:
        if key not in EXPECT_KEYS:
            errors.append((f"{at}.{key}", f"unknown expectation; allowed: {', '.join(EXPECT_KEYS)}"))
    for key in ("contains", "equals", "regex"):
        if key in raw and (not isinstance(raw[key], str) or len(raw[key]) > MAX_PATTERN):
            errors.append((f"{at}.{key}", f"must be a string of at most {MAX_PATTERN} characters"))
    if isinstance(raw.get("regex"), str):
        try:
            re.compile(raw["regex"])
        except re.error as exc:
            errors.append((f"{at}.regex", f"not a regular expression: {exc}"))
    if "json_schema" in raw:
        try:
            if not isinstance(raw["json_schema"], dict):
                raise SchemaError("must be an object")
            Draft202012Validator.check_schema(raw["json_schema"])
            if '"$ref"' in json.dumps(raw["json_schema"]) or '"$dynamicRef"' in json.dumps(raw["json_schema"]):
                raise SchemaError("references ($ref) are not followed: write the schema whole")
        except SchemaError as exc:
            errors.append((f"{at}.json_schema", f"not a JSON schema: {exc.message}"))
    return dict(raw)


def _judge(raw: Any, at: str, errors: Errors) -> dict[str, Any]:
    if not isinstance(raw, dict):
        errors.append((at, 'must be {"profile": "<ref>", "criteria": "..."}'))
        return {}
    for key in raw:
        if key not in ("profile", "criteria"):
            errors.append((f"{at}.{key}", "unknown key; allowed: profile, criteria"))
    if not isinstance(raw.get("profile"), str) or not raw["profile"].strip():
        errors.append((f"{at}.profile", "the judge profile's ref, e.g. judge or judge@3"))
    if not isinstance(raw.get("criteria"), str) or not raw["criteria"].strip() or len(raw["criteria"]) > MAX_CRITERIA:
        errors.append((f"{at}.criteria", f"what the judge checks, as text of at most {MAX_CRITERIA} characters"))
    return dict(raw)


def score(expect: dict[str, Any], output: str) -> list[str]:
    """The expectations `output` fails, as reasons (empty: it passes them all)."""
    reasons: list[str] = []
    if "contains" in expect and expect["contains"] not in output:
        reasons.append(f"does not contain {expect['contains']!r}")
    if "equals" in expect and output.strip() != expect["equals"].strip():
        reasons.append(f"is not equal to {expect['equals']!r}")
    if "regex" in expect and re.search(expect["regex"], output) is None:
        reasons.append(f"does not match /{expect['regex']}/")
    if "json_schema" in expect:
        try:
            value = json.loads(output)
        except ValueError:
            reasons.append("is not JSON")
        else:
            error = next(iter(Draft202012Validator(expect["json_schema"]).iter_errors(value)), None)
            if error is not None:
                where = ".".join(str(p) for p in error.absolute_path)
                reasons.append(f"does not match the JSON schema{f' at {where}' if where else ''}: {error.message}")
    return reasons


def judge_prompt(criteria: str, case_input: str, output: str, *, limit: int) -> str:
    """What the judge is asked, within a turn's prompt limit: the input and the answer are shortened
    (their middle left out, said so) when the whole would not fit."""
    head = "You are grading an assistant's answer. Criteria: " + criteria.strip()
    tail = 'Reply with only a JSON object: {"pass": true or false, "reason": "one sentence"}.'
    room = limit - len(head) - len(tail) - 80
    asked, answered = _fit(case_input, room // 2), _fit(output, room - room // 2)
    return f"{head}\n\nThe user asked:\n{asked}\n\nThe assistant answered:\n{answered}\n\n{tail}"


def _fit(text: str, size: int) -> str:
    if len(text) <= size:
        return text
    half = max(0, (size - 20) // 2)
    return f"{text[:half]}\n[… cut …]\n{text[len(text) - half :]}"


def judge_verdict(reply: str) -> tuple[bool, str]:
    """(passed, reason) from the judge's reply: its first JSON object with a boolean `pass`; a reply
    without one fails the case, saying so."""
    decoder = json.JSONDecoder()
    for start in [m.start() for m in re.finditer(r"\{", reply)]:
        try:
            value, _ = decoder.raw_decode(reply, start)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("pass"), bool):
            return value["pass"], str(value.get("reason", ""))[:500]
    return False, "the judge gave no verdict (no JSON object with a boolean pass)"
