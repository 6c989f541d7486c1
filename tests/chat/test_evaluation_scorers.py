"""The evaluation scorers (`chat.evaluations.scorers`, plain Python): each expectation, and the judge's
verdict read from its reply."""

from __future__ import annotations

import pytest

from chat.evaluations.scorers import judge_verdict, score, validate_cases


@pytest.mark.parametrize(
    ("expect", "output", "reasons"),
    [
        ({"contains": "42"}, "it is 42.", []),
        ({"contains": "42"}, "it is 41.", ["does not contain '42'"]),
        ({"equals": "yes"}, "  yes\n", []),
        ({"equals": "yes"}, "yes!", ["is not equal to 'yes'"]),
        ({"regex": r"^\d+$"}, "123", []),
        ({"regex": r"^\d+$"}, "12a", ["does not match /^\\d+$/"]),
        ({"json_schema": {"type": "object", "required": ["a"]}}, '{"a": 1}', []),
        (
            {"json_schema": {"type": "object", "required": ["a"]}},
            "{}",
            ["does not match the JSON schema: 'a' is a required property"],
        ),
        ({"json_schema": {"type": "object"}}, "not json", ["is not JSON"]),
        ({"contains": "a", "equals": "b"}, "a", ["is not equal to 'b'"]),
    ],
)
def test_every_expectation_given_must_hold(expect, output, reasons):
    assert score(expect, output) == reasons


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ('{"pass": true, "reason": "fine"}', (True, "fine")),
        ('Here you go: {"pass": false, "reason": "no units"} thanks', (False, "no units")),
        ('{"note": 1} then {"pass": true}', (True, "")),
        ('{"pass": "yes"}', (False, "the judge gave no verdict (no JSON object with a boolean pass)")),
        ("I think it passes", (False, "the judge gave no verdict (no JSON object with a boolean pass)")),
    ],
)
def test_the_judges_verdict_is_its_first_json_object_with_a_boolean_pass(reply, verdict):
    assert judge_verdict(reply) == verdict


def test_cases_are_canonical_and_lone_problems_are_reported_with_paths():
    cases, errors = validate_cases(
        [{"input": "q", "expect": {"contains": "a"}, "reference": "r"}, "nope"], max_input=100
    )
    assert cases == [{"input": "q", "expect": {"contains": "a"}, "reference": "r"}]
    assert errors == [("cases[1]", "must be an object with an input")]


def test_a_json_schema_that_refers_elsewhere_is_refused():
    _, errors = validate_cases([{"input": "q", "expect": {"json_schema": {"$ref": "https://x/s.json"}}}], max_input=10)
    assert errors == [
        ("cases[0].expect.json_schema", "not a JSON schema: references ($ref) are not followed: write the schema whole")
    ]


def test_the_judges_prompt_fits_the_limit_whatever_the_answer():
    from chat.evaluations.scorers import judge_prompt

    prompt = judge_prompt("is short", "q" * 10_000, "a" * 50_000, limit=16_000)
    assert len(prompt) <= 16_000 and "[… cut …]" in prompt and prompt.startswith("You are grading")
