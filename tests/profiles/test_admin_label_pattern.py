"""The admin's label inputs check the API's label rule in the browser: their `pattern` is derived from
`LABEL_RE` (and what `canonical_label` does around it), written for the `v` flag browsers compile it with.
The browser side (Chromium compiling it, "Bad Label!" refused) is tests/e2e/test_every_page.py."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils.html import escape

from profiles import services
from profiles.errors import InvalidInput
from profiles.html_patterns import LABEL_PATTERN, html_pattern
from profiles.models import Profile, Registry
from profiles.validation import SLUG_RE, canonical_label

# Names a person might type, on both sides of every part of the rule.
LABEL_SAMPLES = [
    "production",
    "staging",
    "canary-2",
    "blue_green",
    "x",
    "x-",
    "x_",
    "a" * 64,
    "Production",  # the API lower-cases
    "STAGING",
    " canary ",  # and strips
    "\tcanary",
    "latest-2",
    "latest_x",
    "Bad Label!",
    "",
    "   ",
    "latest",  # reserved
    "LATEST",
    " latest ",
    "a" * 65,
    "9lives",
    "-x",
    "_x",
    "two words",
    "x.y",
    "x/y",
    "x[y]",
    "x\\y",
    "x|y",
    "ünïcode",
    "prod!",
]


def api_accepts(name: str) -> bool:
    try:
        canonical_label(name)
    except InvalidInput:
        return False
    return True


def browser_accepts(pattern: str, value: str) -> bool:
    """How a browser applies a `pattern` attribute: the whole value must match."""
    return re.fullmatch(f"(?:{pattern})", value) is not None


def test_the_label_pattern_accepts_exactly_what_the_api_accepts():
    verdicts = {name: (browser_accepts(LABEL_PATTERN, name), api_accepts(name)) for name in LABEL_SAMPLES}
    assert {name: v for name, v in verdicts.items() if v[0] != v[1]} == {}
    assert {api for _, api in verdicts.values()} == {True, False}  # the samples hold both outcomes


def test_the_pattern_is_the_rule_written_for_the_v_flag():
    # A `-` or other punctuation in a class is escaped (a syntax error under `v` otherwise), ranges stay.
    assert html_pattern(re.compile(r"^[a-z][a-z0-9_-]{0,63}$")) == r"(?:[a-z][a-z0-9_\-]{0,63})"
    assert html_pattern(re.compile(r"^[-.a]+\.x(?:y|z)?$")) == r"(?:[\-\.a]+\.x(?:y|z)?)"
    # Quantifiers stay; a `{`, `}` or `]` Python reads as a literal is escaped (alone, an error under `v`).
    assert html_pattern(re.compile(r"^a{2,}b{3}c{x}]$")) == r"(?:a{2,}b{3}c\{x\}\])"
    # What the canonicalisation does before the rule: either case, surrounding space, reserved names.
    assert html_pattern(re.compile(r"^[a-c]$"), ignore_case=True, strip=True, reserved=["b"]) == (
        r"\s*(?!(?:[bB])\s*$)(?:[a-cA-C])\s*"
    )


def test_another_rule_translated_the_same_way_agrees_with_it():
    slug = html_pattern(SLUG_RE)
    samples = ["a", "a.b-c_d", "a" * 128, "a" * 129, "-a", "a-", "A", "a b", "", "x..y", "1"]
    assert [browser_accepts(slug, s) for s in samples] == [SLUG_RE.match(s) is not None for s in samples]


@pytest.mark.parametrize(
    "rule",
    [
        r"[a-z]+",  # not anchored: the browser anchors, so the meanings would differ
        r"^(?P<name>[a-z])$",  # Python-only syntax
        r"^(?=a)[a-z]$",
        r"^\d+$",  # \d, \w... differ between the two engines on non-ASCII text
        r"^[]a]$",  # a leading `]` is a literal in Python, the end of the class in JavaScript
        r"^[\w-]$",  # an escape class inside a class
        r"^a$|^b$",  # inner anchors
        r"^a{,3}$",  # {0,3} in Python, an error under `v`
        r"^a++$",  # possessive
    ],
)
def test_a_rule_it_cannot_translate_faithfully_is_refused(rule):
    with pytest.raises(ValueError):
        html_pattern(re.compile(rule))


def test_an_ignore_case_rule_is_refused_rather_than_translated_case_sensitively():
    with pytest.raises(ValueError):
        html_pattern(re.compile(r"^[a-z]$", re.IGNORECASE))


@pytest.mark.django_db
def test_the_admin_label_inputs_carry_the_derived_pattern(admin_client):
    services.registry_create(slug="team")
    services.profile_create(registry_slug="team", slug="agent", runtime={"system_prompt": "v1"})
    attribute = f'pattern="{escape(LABEL_PATTERN)}"'

    profile = Profile.objects.get(slug="agent")
    versions = admin_client.get(reverse("admin:profiles_profile_versions", args=[profile.pk])).content.decode()
    assert re.search(rf'<input[^>]*id="label-name"[^>]*{re.escape(attribute)}', versions)

    registry = Registry.objects.get(slug="team")
    change = admin_client.get(reverse("admin:profiles_registry_change", args=[registry.pk])).content.decode()
    assert re.search(rf'<input[^>]*name="serve_label"[^>]*{re.escape(attribute)}', change)
