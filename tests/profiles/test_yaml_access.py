"""YAML import and export of access and stacks: `editor_groups` and `group_defaults` on a registry,
`visible_to_groups` and `stack` on a profile. Export -> import into an empty database -> export gives the
same text; errors name the file, the line and the path; the shared fixture still loads."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from profiles import selectors, services
from profiles.models import Profile, ProfileGroupAccess, Registry
from profiles.yamlio import export_text, import_text

from .support import SEED_FILE

pytestmark = pytest.mark.django_db

# Layers named before they are defined (`a-team` stacks `base`, `remote` stacks `zeta/shared` of a
# registry further down), a restricted profile that sorts before the default, and both registry settings.
FILE = """
registries:
  alpha:
    display_name: Alpha
    default_profile_slug: main
    editor_groups: [alpha-editors, leads]
    group_defaults:
      - {group: support, profile: a-team}
      - {group: sales, profile: main}
    profiles:
      a-team:
        visible_to_groups: [support, leads]
        stack:
          - {slug: base}
          - {slug: main, version: 1}
        runtime:
          system_prompt: Team prompt.
      base:
        runtime:
          system_prompt: Base prompt.
          tools: [calculator]
      main:
        runtime:
          system_prompt: Main prompt.
      remote:
        stack:
          - {registry: zeta, slug: shared}
  zeta:
    default_profile_slug: shared
    profiles:
      shared:
        runtime:
          middlewares:
            - name: suggestions
              id: followups
"""


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def import_(path: Path, *args: str) -> str:
    out = io.StringIO()
    call_command("profiles_import", str(path), *args, stdout=out)
    return out.getvalue()


def test_a_file_with_stacks_groups_and_defaults_imports_whatever_its_order(tmp_path):
    import_(write(tmp_path, FILE))
    alpha = Registry.objects.get(slug="alpha")
    assert alpha.editor_groups == ["alpha-editors", "leads"]
    assert alpha.group_defaults == [{"group": "support", "profile": "a-team"}, {"group": "sales", "profile": "main"}]
    assert alpha.default_profile.slug == "main"
    team = Profile.objects.get(registry=alpha, slug="a-team")
    assert team.visible_to_groups == ["leads", "support"]
    assert sorted(ProfileGroupAccess.objects.filter(profile=team).values_list("group_name", flat=True)) == [
        "leads",
        "support",
    ]
    assert team.stack == [{"registry": "alpha", "slug": "base"}, {"registry": "alpha", "slug": "main", "version": 1}]
    assert team.version == 1  # one write per profile: the stack is checked once the file is in
    result = selectors.profile_resolve(registry_slug="alpha", profile_slug="a-team")
    assert [layer["slug"] for layer in result.lineage] == ["base", "main", "a-team"]
    remote = selectors.profile_resolve(registry_slug="alpha", profile_slug="remote")
    assert remote.lineage[0] == {"registry": "zeta", "slug": "shared", "version": 1}


def test_export_import_export_is_stable_with_stacks_groups_and_defaults(tmp_path):
    import_(write(tmp_path, FILE))
    services.profile_update(registry_slug="alpha", slug="base", changes={"description": "v2"})
    first = export_text()
    exported = yaml.safe_load(first)["registries"]
    assert exported["alpha"]["group_defaults"][0] == {"group": "support", "profile": "a-team"}
    assert exported["alpha"]["editor_groups"] == ["alpha-editors", "leads"]
    assert exported["alpha"]["profiles"]["a-team"]["visible_to_groups"] == ["leads", "support"]
    assert exported["alpha"]["profiles"]["a-team"]["stack"][0] == {"registry": "alpha", "slug": "base"}
    assert "stack" not in exported["alpha"]["profiles"]["main"]  # absent when unset
    assert "editor_groups" not in exported["zeta"]

    Registry.objects.all().delete()
    import_text(first, label="first.yaml")
    assert export_text() == first


def test_importing_the_file_twice_changes_nothing(tmp_path):
    path = write(tmp_path, FILE)
    import_(path)
    before = sorted(Profile.objects.values_list("slug", "version")), sorted(Registry.objects.values_list("version"))
    import_(path)
    import_(path, "--replace")
    after = sorted(Profile.objects.values_list("slug", "version")), sorted(Registry.objects.values_list("version"))
    assert after == before


def test_without_replace_registry_settings_are_set_only_where_missing(seeded, tmp_path):
    services.registry_update(slug="inventory", editor_groups=["keepers"])
    path = write(
        tmp_path,
        """
        registries:
          inventory:
            editor_groups: [others]
            group_defaults: [{group: support, profile: inventory}]
            profiles: {}
        """,
    )
    import_(path)
    inventory = Registry.objects.get(slug="inventory")
    assert inventory.editor_groups == ["keepers"]  # it had some: kept
    assert inventory.group_defaults == [{"group": "support", "profile": "inventory"}]  # it had none: set
    import_(path, "--replace")
    inventory.refresh_from_db()
    assert inventory.editor_groups == ["others"]


def test_replace_removes_stacked_profiles_before_their_bases(tmp_path):
    import_(write(tmp_path, FILE))
    import_(
        write(
            tmp_path,
            """
            registries:
              alpha:
                default_profile_slug: main
                profiles:
                  main: {runtime: {system_prompt: Main prompt.}}
              zeta:
                default_profile_slug: shared
                profiles:
                  shared: {runtime: {middlewares: [{name: suggestions, id: followups}]}}
            """,
            "smaller.yaml",
        ),
        "--replace",
    )
    assert sorted(Profile.objects.filter(registry__slug="alpha").values_list("slug", flat=True)) == ["main"]
    assert Registry.objects.get(slug="alpha").group_defaults == []
    assert Registry.objects.get(slug="alpha").editor_groups == []


@pytest.mark.parametrize(
    ("change", "needle", "field", "reason"),
    [
        ("- {slug: base}", "- {slug: nowhere}", "registries.alpha.profiles.a-team.stack[0]", "layer alpha/nowhere"),
        ("- {slug: base}", "- {slug: a-team}", "registries.alpha.profiles.a-team.stack[0]", "cycle"),
        ("- {slug: base}", "- {slug: base, extra: 1}", "registries.alpha.profiles.a-team.stack[0].extra", "unknown"),
        ("[support, leads]", "[support, 7]", "registries.alpha.profiles.a-team.visible_to_groups[1]", "group name"),
        (
            "- {group: sales, profile: main}",
            "- {group: sales, profile: a-team}",
            "registries.alpha.group_defaults[1].profile",
            "not visible to group 'sales'",
        ),
        ("editor_groups: [alpha-editors, leads]", "editor_groups: leads", "registries.alpha.editor_groups", "list"),
    ],
)
def test_errors_name_the_file_line_and_path_and_change_nothing(tmp_path, change, needle, field, reason):
    text = FILE.replace(change, needle, 1)
    path = write(tmp_path, text)
    with pytest.raises(CommandError) as raised:
        import_(path)
    message = str(raised.value)
    lines = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if needle.strip() in line]
    assert message.startswith(f"{path}:{lines[0]}: {field}: "), message
    assert reason in message
    assert not Registry.objects.exists()


def test_the_shared_fixture_still_loads_unchanged(db):
    report = import_text(SEED_FILE.read_text(), label="registries.yaml")
    assert len(report.created) == 6
    assert not Registry.objects.exclude(editor_groups=[]).exists()
    assert not Profile.objects.exclude(stack=[]).exists()
