"""Hostile YAML: the import refuses it with `file:line: path: reason`, fast, and writes nothing."""

from __future__ import annotations

import pytest
import yaml

from profiles.models import Profile, ProfileRevision, Registry
from profiles.yamlload import MAX_ALIAS_NODES, MAX_ALIASES, MAX_DEPTH, MAX_INPUT_CHARS, StrictLoader

from .support import SEED_FILE
from .test_seed_fixture import SHARED
from .test_yaml_io import assert_import_fails, import_, line_of, state, write

pytestmark = pytest.mark.django_db

NOT_ALLOWED = "is not allowed: only strings, numbers, booleans, null, lists and mappings"
NOT_A_DATE = "a date or time is not a JSON value (quote it to keep it as text)"
NOT_FINITE = "NaN and infinity are not JSON numbers"

# `value` (line 7) sits in the extension of a profile; the mappings around it are 7 nesting levels.
IN_PROFILE = """\
registries:
  team:
    profiles:
      p:
        extensions:
          acme.widget@v1:
            value: {value}
"""
VALUE = "registries.team.profiles.p.extensions[acme.widget@v1].value"
LEVELS_AROUND_VALUE = 7
TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"


def counts() -> tuple[int, int, int]:
    return Registry.objects.count(), Profile.objects.count(), ProfileRevision.objects.count()


def assert_refused(path, line: int, field: str, reason: str) -> None:
    """Importing `path` fails with exactly `path:line: field: reason` and changes nothing."""
    before = state(), counts()
    message = assert_import_fails(path)
    assert message == f"{path}:{line}: {field}: {reason} (nothing was imported)"
    assert (state(), counts()) == before


# --------------------------------------------------------------------------- aliases


def test_the_billion_laughs_alias_bomb_is_refused(seeded, tmp_path):
    lol = ", ".join(['"lol"'] * 9)
    levels = [f"a: &a [{lol}]"] + [
        f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]" for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    path = write(tmp_path, "\n".join(levels) + "\n")
    # b expands to 9 x 10 nodes and c to 9 x 91: the second alias of d passes the budget.
    assert_refused(path, 4, "d[1]", f"aliases expand to more than {MAX_ALIAS_NODES} nodes")


def test_more_aliases_than_the_budget_are_refused(seeded, tmp_path):
    aliases = ", ".join(["*tool"] * (MAX_ALIASES + 1))
    path = write(tmp_path, IN_PROFILE.format(value=f"[&tool calculator, {aliases}]"))
    assert_refused(path, 7, f"{VALUE}[{MAX_ALIASES + 1}]", f"more than {MAX_ALIASES} aliases")


@pytest.mark.parametrize(
    ("value", "field"),
    [("&loop [1, *loop]", f"{VALUE}[1]"), ("&loop {again: *loop}", f"{VALUE}.again")],
    ids=["list", "mapping"],
)
def test_a_self_referencing_alias_is_refused(seeded, tmp_path, value, field):
    path = write(tmp_path, IN_PROFILE.format(value=value))
    assert_refused(path, 7, field, "alias *loop refers to a node that contains it")


def test_an_alias_cannot_nest_deeper_than_the_limit(seeded, tmp_path):
    half = MAX_DEPTH // 2 + 1
    text = IN_PROFILE.format(value="[a]") + f"            deep: &deep {'[' * half}{']' * half}\n"
    text += f"            deeper: {'[' * half}*deep{']' * half}\n"
    path = write(tmp_path, text)
    field = VALUE.replace("value", "deeper") + "[0]" * half
    assert_refused(path, 9, field, f"alias *deep nests deeper than {MAX_DEPTH} levels")


# --------------------------------------------------------------------------- types JSON cannot hold


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2024-01-31", NOT_A_DATE),
        ("2024-01-31T10:00:00Z", NOT_A_DATE),
        ("2024-01-31 10:00:00.5", NOT_A_DATE),
        ("!!binary aGVsbG8=", f"!!binary {NOT_ALLOWED}"),
        ("!!set {a, b}", f"!!set {NOT_ALLOWED}"),
        ("!!omap [{a: 1}, {b: 2}]", f"!!omap {NOT_ALLOWED}"),
        ("!!pairs [{a: 1}, {a: 2}]", f"!!pairs {NOT_ALLOWED}"),
        ('!!python/object/apply:os.system ["true"]', f"!!python/object/apply:os.system {NOT_ALLOWED}"),
        ("!!python/name:os.system", f"!!python/name:os.system {NOT_ALLOWED}"),
        ("!secret token", f"!secret {NOT_ALLOWED}"),
        (".nan", NOT_FINITE),
        (".inf", NOT_FINITE),
        ("-.inf", NOT_FINITE),
        ("1.0e+400", NOT_FINITE),
        ("!!int twelve", "'twelve' is not a valid int"),
    ],
    ids=[
        "date", "datetime", "space-datetime", "binary", "set", "omap", "pairs", "python-object",
        "python-name", "custom-tag", "nan", "inf", "-inf", "overflow", "bad-int",
    ],
)  # fmt: skip
def test_a_value_json_cannot_hold_is_refused(seeded, tmp_path, value, reason):
    path = write(tmp_path, IN_PROFILE.format(value=value))
    assert_refused(path, 7, VALUE, reason)


def test_a_date_in_a_list_names_its_index_and_line(seeded, tmp_path):
    path = write(tmp_path, IN_PROFILE.format(value="") + "              - fine\n              - 2024-01-31\n")
    assert_refused(path, line_of(path, "2024-01-31"), f"{VALUE}[1]", NOT_A_DATE)


# --------------------------------------------------------------------------- nesting


@pytest.mark.parametrize(
    ("value", "line", "step"),
    [
        ("[" * 5000 + "]" * 5000, 7, "[0]"),
        ("{a: " * 5000 + "1" + "}" * 5000, 7, ".a"),
        ("\n" + " " * 14 + "- " * 5000 + "x", 8, "[0]"),
    ],
    ids=["flow-lists", "flow-mappings", "block-lists"],
)
def test_5000_deep_nesting_is_refused(seeded, tmp_path, value, line, step):
    path = write(tmp_path, IN_PROFILE.format(value=value))
    # `value` itself is the 8th level: the first refused one is MAX_DEPTH - 7 steps below it.
    assert_refused(path, line, VALUE + step * (MAX_DEPTH - LEVELS_AROUND_VALUE), TOO_DEEP)


def test_deeply_nested_block_mappings_are_refused(seeded, tmp_path):
    depth = 2 * MAX_DEPTH  # 5,000 levels of block mappings would need 12 MB of indentation
    lines = [" " * (14 + level) + "a:" for level in range(depth)]
    path = write(tmp_path, IN_PROFILE.format(value="") + "\n".join(lines) + "\n")
    steps = MAX_DEPTH - LEVELS_AROUND_VALUE
    assert_refused(path, 8 + steps, VALUE + ".a" * steps, TOO_DEEP)


# --------------------------------------------------------------------------- duplicate keys


def test_a_duplicate_top_level_key_is_refused(seeded, tmp_path):
    path = write(
        tmp_path,
        """
        registries:
          team:
            profiles: {}
        registries:
          other:
            profiles: {}
        """,
    )
    assert_refused(path, 4, "registries", "duplicate key (first on line 1)")


@pytest.mark.parametrize(
    ("text", "line", "first", "field"),
    [
        (
            """
            registries:
              default:
                profiles:
                  agent:
                    description: first
                  agent:
                    description: second, silently winning before
            """,
            6,
            4,
            "registries.default.profiles.agent",
        ),
        (
            """
            registries:
              team:
                profiles:
                  p:
                    runtime:
                      tools: [calculator]
                      system_prompt: Be brief.
                      "tools": [current_time]
            """,
            8,
            6,
            "registries.team.profiles.p.runtime.tools",
        ),
        (
            "registries:\n  team:\n    profiles:\n      p:\n        extensions:\n          acme.widget@v1: {1: a, 1.0: b}\n",
            6,
            6,
            "registries.team.profiles.p.extensions[acme.widget@v1].1.0",
        ),
    ],
    ids=["profile", "runtime-key", "equal-numbers"],
)
def test_a_duplicate_nested_key_is_refused(seeded, tmp_path, text, line, first, field):
    path = write(tmp_path, text)
    assert_refused(path, line, field, f"duplicate key (first on line {first})")


# --------------------------------------------------------------------------- size


def test_an_input_larger_than_the_bound_is_refused_without_being_parsed(seeded, tmp_path):
    path = write(tmp_path, "registries: {}\n# " + "x" * MAX_INPUT_CHARS + "\n")
    assert_refused(path, 1, "(document)", f"longer than {MAX_INPUT_CHARS} characters")


# --------------------------------------------------------------------------- normal files


@pytest.mark.parametrize(
    "source",
    [
        SEED_FILE,
        pytest.param(
            SHARED,
            marks=pytest.mark.skipif(not SHARED.exists(), reason="the shared spec folder is not beside this checkout"),
        ),
    ],
    ids=["seed", "shared-fixture"],
)
def test_normal_files_load_exactly_as_with_safe_load(source):
    text = source.read_text(encoding="utf-8")
    assert StrictLoader(text).get_single_data() == yaml.safe_load(text)


def test_a_normal_file_with_a_few_aliases_still_imports(tmp_path):
    path = write(
        tmp_path,
        """
        registries:
          team:
            default_profile_slug: a
            profiles:
              a:
                runtime: &runtime
                  tools: [calculator]
                  middlewares: &middlewares
                    - name: context_window
                      config: {max_turns: 4}
              b:
                runtime:
                  tools: [current_time]
                  middlewares: *middlewares
              c:
                runtime: *runtime
        """,
    )
    output = import_(path)
    assert output.strip() == f"{path}: 3 created, 0 updated, 0 unchanged, 0 deleted, 0 label moves"
    runtimes = dict(Profile.objects.values_list("slug", "runtime"))
    assert runtimes["a"] == runtimes["c"]
    assert runtimes["b"] == {**runtimes["a"], "tools": ["current_time"]}
    assert counts() == (1, 3, 3)


def test_a_merge_key_is_refused_with_its_line(seeded, tmp_path):
    """`<<: *base` would take keys from elsewhere in the file: refused like anything not plainly written."""
    text = IN_PROFILE.format(value="{a: 1}").replace(
        "        extensions:", "        base: &base {x: 1}\n        extensions:"
    )
    text += "      q:\n        <<: *base\n"
    path = write(tmp_path, text)
    assert_refused(path, 10, "registries.team.profiles.q", "merge keys (<<) are not allowed: write the keys out")
