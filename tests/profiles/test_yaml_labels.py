"""Labels in YAML export/import, and `profiles_import --dry-run`: the plan, its exit status, no writes."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from profiles import services
from profiles.models import Profile, ProfileLabel, ProfileLabelMove, ProfileRevision, Registry
from profiles.yamlio import export_text

pytestmark = pytest.mark.django_db

TEAM = """
registries:
  team:
    display_name: Team
    protected_labels: [production]
    serve_label: production
    default_profile_slug: agent
    profiles:
      agent:
        runtime:
          system_prompt: "{prompt}"
        labels:
          {labels}
"""


def write(tmp_path: Path, text: str, name: str = "team.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def team_file(tmp_path: Path, *, prompt: str = "v1", labels: str = "production: 1") -> Path:
    return write(tmp_path, TEAM.format(prompt=prompt, labels=labels))


def run(*args: str) -> tuple[int, str]:
    """(exit status, stdout) of `profiles_import`."""
    out = io.StringIO()
    try:
        call_command("profiles_import", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code), out.getvalue()
    return 0, out.getvalue()


def snapshot() -> list:
    return [
        *Registry.objects.order_by("slug").values_list("slug", "version", "serve_label", "protected_labels"),
        *Profile.objects.order_by("pk").values_list("slug", "version"),
        *ProfileLabel.objects.order_by("pk").values_list("name", "version"),
        ("moves", ProfileLabelMove.objects.count()),
        ("revisions", ProfileRevision.objects.count()),
    ]


def test_labels_and_label_settings_are_imported_and_their_moves_recorded(tmp_path):
    status, _ = run(str(team_file(tmp_path)))
    assert status == 0
    registry = Registry.objects.get(slug="team")
    assert (registry.serve_label, registry.protected_labels) == ("production", ["production"])
    assert dict(ProfileLabel.objects.values_list("name", "version")) == {"production": 1}
    move = ProfileLabelMove.objects.get()
    assert (move.from_version, move.to_version, move.source) == (None, 1, "import")


def test_export_carries_labels_and_their_moves_and_re_importing_it_changes_nothing(tmp_path):
    run(str(team_file(tmp_path)))
    services.profile_update(registry_slug="team", slug="agent", changes={"description": "two"})
    services.label_set(registry_slug="team", slug="agent", name="staging", version=2)
    exported = export_text(registry="team")
    assert "serve_label: production" in exported and "protected_labels:" in exported
    assert "labels:" in exported and "label_moves:" in exported and "staging: 2" in exported
    path = write(tmp_path, exported, "exported.yaml")
    before = snapshot()
    status, output = run(str(path), "--replace", "--dry-run")
    assert status == 0, output
    assert not [line for line in output.splitlines() if line.startswith(("update", "label move", "create"))]
    assert run(str(path), "--replace")[0] == 0
    assert snapshot() == before  # importing the same content again writes no version and moves no label


def test_dry_run_prints_the_plan_exits_3_and_writes_nothing(tmp_path):
    run(str(team_file(tmp_path)))
    services.profile_update(registry_slug="team", slug="agent", changes={"description": "two"})
    before = snapshot()
    changed = team_file(tmp_path, prompt="v3", labels="production: 2\n          staging: 1")
    status, output = run(str(changed), "--replace", "--dry-run")
    assert status == 3, output
    lines = output.splitlines()
    assert "update team/agent" in lines
    assert "    change runtime.system_prompt: 'v1' -> 'v3'" in lines
    assert "label move team/agent@production: 1 -> 2" in lines
    assert "label move team/agent@staging: None -> 1" in lines
    assert snapshot() == before


def test_dry_run_of_a_file_that_changes_nothing_exits_0(tmp_path):
    path = team_file(tmp_path)
    run(str(path))
    before = snapshot()
    status, output = run(str(path), "--replace", "--dry-run")
    assert status == 0, output
    assert "unchanged team/agent" in output.splitlines()
    assert snapshot() == before


def test_dry_run_of_new_registries_plans_their_creation(tmp_path):
    status, output = run(str(team_file(tmp_path)), "--dry-run")
    assert status == 3
    assert output.splitlines()[:3] == [
        "create team",
        "create team/agent",
        "label move team/agent@production: None -> 1",
    ]
    assert not Registry.objects.filter(slug="team").exists()


def test_a_label_on_a_version_the_profile_never_had_is_refused_with_its_line(tmp_path):
    path = team_file(tmp_path, labels="production: 4")
    with pytest.raises(CommandError) as caught:
        call_command("profiles_import", str(path), stdout=io.StringIO())
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "production: 4" in text)
    assert f"{path}:{line}: registries.team.profiles.agent.labels.production:" in str(caught.value)
    assert "nothing was imported" in str(caught.value)
    assert not Registry.objects.filter(slug="team").exists()
