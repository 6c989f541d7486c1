"""YAML import and export (spec section 8) through the management commands."""

from __future__ import annotations

import io
import os
import textwrap
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from profiles import services
from profiles.models import Profile, ProfileRevision, Registry
from profiles.yamlio import export_text

from .support import SEED_FILE, SEED_PROFILES

pytestmark = pytest.mark.django_db

STARTER = "webchat.starter_suggestions@v1"


def state() -> dict:
    """Everything an import may change: registries, profiles (with versions and content), history."""
    return {
        "registries": list(
            Registry.objects.order_by("slug").values_list("slug", "version", "display_name", "default_profile__slug")
        ),
        "profiles": list(
            Profile.objects.order_by("registry__slug", "slug").values_list(
                "registry__slug", "slug", "version", "display_name", "description", "runtime", "policy", "extensions"
            )
        ),
        "revisions": ProfileRevision.objects.count(),
    }


def versions() -> dict[str, int]:
    return {f"{p.registry.slug}/{p.slug}": p.version for p in Profile.objects.select_related("registry")}


def import_(path: Path | str, *args: str) -> str:
    out = io.StringIO()
    call_command("profiles_import", str(path), *args, stdout=out)
    return out.getvalue()


def write(tmp_path: Path, text: str, name: str = "registries.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    """1-based number of the only line of `path` that contains `needle`."""
    lines = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if needle in line]
    assert len(lines) == 1, (needle, lines)
    return lines[0]


# --------------------------------------------------------------------------- import


def test_the_seed_imports():
    output = import_(SEED_FILE)
    assert output.strip() == f"{SEED_FILE}: 6 created, 0 updated, 0 unchanged, 0 deleted, 0 label moves"
    registries = {r.slug: r for r in Registry.objects.select_related("default_profile")}
    assert set(registries) == {"default", "inventory"}
    assert registries["default"].default_profile.slug == "default"
    assert registries["inventory"].default_profile.slug == "inventory"
    for registry, slugs in SEED_PROFILES.items():
        assert (
            list(Profile.objects.filter(registry__slug=registry).order_by("slug").values_list("slug", flat=True))
            == slugs
        )
    analyst = Profile.objects.get(registry__slug="default", slug="analyst")
    assert analyst.runtime["middlewares"] == [{"name": "suggestions", "id": "followups", "config": {"max_items": 3}}]
    assert analyst.policy["allowed_override_keys"] == ["step_settings_patch", "system_prompt"]
    assert analyst.extensions[STARTER]["items"][1] == "What is 17.5% of 2,340?"
    assert (analyst.version, analyst.source) == (1, "import")


def test_importing_twice_changes_nothing(seeded):
    before = state()
    output = import_(SEED_FILE)
    assert output.strip().endswith("0 created, 0 updated, 6 unchanged, 0 deleted, 0 label moves")
    assert state() == before


def test_an_import_without_replace_keeps_profiles_edited_since(seeded):
    services.profile_update(registry_slug="default", slug="agent", changes={"description": "edited in the UI"})
    before = state()
    import_(SEED_FILE)
    assert state() == before


def test_replace_updates_changed_profiles_and_leaves_the_others_alone(seeded, tmp_path):
    text = SEED_FILE.read_text().replace(
        "system_prompt: You are an inventory assistant.", "system_prompt: You are a stock-keeping assistant."
    )
    path = write(tmp_path, text)
    before = versions()
    output = import_(path, "--replace")
    assert output.strip().endswith("0 created, 1 updated, 5 unchanged, 0 deleted, 0 label moves")
    after = versions()
    assert after == {**before, "inventory/inventory": 2}
    changed = Profile.objects.get(registry__slug="inventory", slug="inventory")
    assert changed.runtime["system_prompt"] == "You are a stock-keeping assistant."
    assert changed.source == "import"
    latest = ProfileRevision.objects.filter(profile_id_at_write=changed.pk).order_by("-version").first()
    assert (latest.version, latest.change) == (2, "imported")


def test_replace_with_the_same_file_changes_nothing(seeded):
    before = state()
    output = import_(SEED_FILE, "--replace")
    assert output.strip().endswith("0 created, 0 updated, 6 unchanged, 0 deleted, 0 label moves")
    assert state() == before  # registry versions included: nothing was written


def test_replace_of_a_profile_without_display_name_is_idempotent(tmp_path):
    path = write(
        tmp_path,
        """
        registries:
          plain:
            profiles:
              bare:
                description: No display name in the file.
        """,
    )
    import_(path)
    before = state()
    output = import_(path, "--replace")
    assert output.strip().endswith("0 created, 0 updated, 1 unchanged, 0 deleted, 0 label moves")
    assert state() == before


def test_replace_deletes_profiles_missing_from_the_file_but_keeps_the_default(seeded, tmp_path):
    services.profile_create(registry_slug="default", slug="extra")
    import_(SEED_FILE, "--replace")
    assert not Profile.objects.filter(slug="extra").exists()
    assert Profile.objects.count() == 6


def test_replace_applies_the_files_default(seeded):
    services.registry_set_default(registry_slug="default", slug="agent")
    import_(SEED_FILE, "--replace")
    assert Registry.objects.get(slug="default").default_profile.slug == "default"


def test_a_single_registry_document_is_accepted(tmp_path):
    path = write(
        tmp_path,
        """
        slug: Solo
        display_name: Solo registry
        default_profile_slug: second
        profiles:
          first:
            display_name: First
          Second:
            display_name: Second
            runtime:
              tools: [calculator]
        """,
    )
    import_(path)
    registry = Registry.objects.get(slug="solo")
    assert (registry.display_name, registry.default_profile.slug) == ("Solo registry", "second")
    assert list(registry.profiles.order_by("slug").values_list("slug", flat=True)) == ["first", "second"]
    assert registry.profiles.get(slug="second").runtime == {"tools": ["calculator"]}


# --------------------------------------------------------------------------- import errors


def assert_import_fails(path: Path, *args: str) -> str:
    with pytest.raises(CommandError) as caught:
        import_(path, *args)
    message = str(caught.value)
    assert message.startswith(f"{path}:"), message
    assert message.endswith("(nothing was imported)"), message
    return message


def test_a_malformed_file_names_the_file_and_line_and_changes_nothing(seeded, tmp_path):
    path = write(
        tmp_path,
        """
        registries:
          default:
            profiles:
              agent:
                description: a: b
        """,
    )
    before = state()
    message = assert_import_fails(path)
    assert message == f"{path}:5: malformed YAML: mapping values are not allowed here (nothing was imported)"
    assert state() == before


def test_an_unclosed_flow_sequence_names_the_file_and_changes_nothing(seeded, tmp_path):
    path = write(tmp_path, "registries:\n  default:\n    profiles: [a, b\n")
    before = state()
    message = assert_import_fails(path)
    assert "malformed YAML" in message
    assert state() == before


def test_an_unknown_middleware_names_file_line_path_and_reason_and_changes_nothing(seeded, tmp_path):
    path = write(
        tmp_path,
        """
        registries:
          default:
            profiles:
              agent:
                description: changed, but must not land
          brand-new:
            default_profile_slug: ok
            profiles:
              ok:
                display_name: OK
              broken:
                runtime:
                  middlewares:
                    - name: suggestions
                      id: s
                    - name: teleport
                      config: {}
        """,
    )
    before = state()
    message = assert_import_fails(path, "--replace")
    line = line_of(path, "name: teleport")
    field = "registries.brand-new.profiles.broken.runtime.middlewares[1].name"
    assert message.startswith(f"{path}:{line}: {field}: ")
    assert "unknown middleware 'teleport'" in message
    assert state() == before
    assert not Registry.objects.filter(slug="brand-new").exists()


@pytest.mark.parametrize(
    ("body", "needle", "field"),
    [
        (
            """
            runtime:
              tools:
                - calculator
                - rm_rf
            """,
            "- rm_rf",
            "runtime.tools[1]",
        ),
        (
            """
            runtime:
              middlewares:
                - name: context_window
                  config:
                    max_turns: 0
            """,
            "max_turns: 0",
            "runtime.middlewares[0].config.max_turns",
        ),
        (
            """
            extensions:
              webchat.starter_suggestions@v1:
                items:
                  - fine
                  - 42
            """,
            "- 42",
            "extensions[webchat.starter_suggestions@v1].items[1]",
        ),
        (
            """
            extensions:
              bad-key: 1
            """,
            "bad-key: 1",
            "extensions[bad-key]",
        ),
    ],
    ids=["tool", "middleware-config", "extension-codec", "extension-key"],
)
def test_an_invalid_profile_names_the_line_of_the_offending_value(tmp_path, body, needle, field):
    indented = textwrap.indent(textwrap.dedent(body).strip("\n"), " " * 8)
    path = write(tmp_path, f"registries:\n  team:\n    profiles:\n      p:\n{indented}\n")
    message = assert_import_fails(path)
    assert message.startswith(f"{path}:{line_of(path, needle)}: registries.team.profiles.p.{field}: "), message
    assert not Registry.objects.exists()


def test_an_invalid_profile_with_a_dotted_slug_names_its_line(tmp_path):
    path = write(
        tmp_path,
        """
        registries:
          team:
            profiles:
              v1.2:
                runtime:
                  tools: [teleport]
        """,
    )
    message = assert_import_fails(path)
    assert message.startswith(
        f"{path}:{line_of(path, 'tools: [teleport]')}: registries.team.profiles.v1.2.runtime.tools[0]: "
    )


def test_an_invalid_single_registry_document_names_the_path_without_a_prefix(tmp_path):
    path = write(
        tmp_path,
        """
        slug: solo
        profiles:
          p:
            runtime:
              tools: [nope]
        """,
    )
    message = assert_import_fails(path)
    assert message.startswith(f"{path}:{line_of(path, 'tools: [nope]')}: profiles.p.runtime.tools[0]: ")
    assert "unknown tool 'nope'" in message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("registries:\n  team:\n    colour: red\n", "registries.team.colour"),
        (
            "registries:\n  team:\n    profiles:\n      p:\n        metadata: {version: 9}\n",
            "registries.team.profiles.p.metadata",
        ),
        ("registries:\n  bad slug:\n    profiles: {}\n", "registries.bad slug.slug"),
        ("registries:\n  team:\n    profiles:\n      -x: {}\n", "registries.team.profiles.-x.slug"),
        ("- just\n- a list\n", "(document)"),
        (
            "registries:\n  team:\n    default_profile_slug: ghost\n    profiles:\n      p: {}\n",
            "registries.team.default_profile_slug",
        ),
    ],
)
def test_structural_errors_name_the_path_and_change_nothing(tmp_path, text, field):
    path = write(tmp_path, text)
    message = assert_import_fails(path)
    assert f": {field}: " in message
    assert not Registry.objects.exists()


def test_an_unreadable_file_is_a_command_error(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(CommandError) as caught:
        import_(missing)
    assert str(caught.value).startswith(f"{missing}: cannot read")


# --------------------------------------------------------------------------- export


def edit_after_seed() -> None:
    """State the seed alone does not have: API edits, unknown extensions, a disabled middleware, ..."""
    services.profile_update(
        registry_slug="default",
        slug="agent",
        changes={
            "description": "Edited: ünïcödé ✓ and a 'quote' and: a colon",
            "runtime": {
                "system_prompt": "Line one.\nLine two.\n",
                "middlewares": [
                    {"name": "redact", "enabled": False},
                    {"name": "context_window", "config": {"max_turns": 5}},
                ],
                "tools": ["current_time"],
                "step_settings_patch": {"ai-chat": {"ai-api-type": "openai", "ai-temperature": 0.7}},
            },
            "extensions": {
                "acme.widget@v2": {"z": [1, 2.5, None, True], "a": {"nested": "yes"}},
                STARTER: {"items": []},
            },
        },
    )
    services.profile_create(registry_slug="default", slug="locked", policy={"read_only": True, "allow_overrides": True})
    services.registry_set_default(registry_slug="default", slug="analyst")
    services.registry_create(slug="empty", display_name="Empty", description="No profiles yet.")


def test_export_import_export_round_trips_to_identical_text(seeded, tmp_path):
    edit_after_seed()
    first = tmp_path / "first.yaml"
    call_command("profiles_export", str(first))
    first_text = first.read_text(encoding="utf-8")
    exported = yaml.safe_load(first_text)["registries"]
    assert set(exported) == {"default", "empty", "inventory"}
    assert exported["default"]["default_profile_slug"] == "analyst"

    Registry.objects.all().delete()  # an empty database (profiles cascade)
    assert not Profile.objects.exists()

    import_(first)
    second = tmp_path / "second.yaml"
    call_command("profiles_export", str(second))
    assert second.read_text(encoding="utf-8") == first_text


def test_the_seed_round_trips_through_export(seeded, tmp_path):
    first = tmp_path / "a.yaml"
    call_command("profiles_export", str(first))
    before = state()["profiles"]
    Registry.objects.all().delete()
    import_(first)
    assert state()["profiles"] == before
    second = tmp_path / "b.yaml"
    call_command("profiles_export", str(second))
    assert second.read_text() == first.read_text()


def test_export_to_standard_output_and_of_one_registry(seeded):
    out = io.StringIO()
    call_command("profiles_export", stdout=out)
    assert out.getvalue() == export_text()
    out = io.StringIO()
    call_command("profiles_export", "--registry", "inventory", stdout=out)
    data = yaml.safe_load(out.getvalue())
    assert list(data["registries"]) == ["inventory"]
    assert sorted(data["registries"]["inventory"]["profiles"]) == SEED_PROFILES["inventory"]


def test_export_replaces_the_target_file_and_leaves_no_temporary_file(seeded, tmp_path):
    target = tmp_path / "out.yaml"
    target.write_text("old content\n")
    os.chmod(target, 0o644)
    call_command("profiles_export", str(target))
    assert target.read_text() == export_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.yaml"]


def test_a_failed_export_leaves_the_old_file_and_no_temporary_file(seeded, tmp_path, monkeypatch):
    target = tmp_path / "out.yaml"
    target.write_text("old content\n")

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr("profiles.yamlio.os.replace", broken_replace)
    with pytest.raises(CommandError) as caught:
        call_command("profiles_export", str(target))
    assert "disk on fire" in str(caught.value)
    assert target.read_text() == "old content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.yaml"]


def test_export_writes_through_a_temporary_file_then_renames(seeded, tmp_path, monkeypatch):
    target = tmp_path / "out.yaml"
    seen: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((Path(src).name, Path(src).read_text()))
        assert not Path(dst).exists()  # readers never see a partial target
        real_replace(src, dst)

    monkeypatch.setattr("profiles.yamlio.os.replace", spy)
    call_command("profiles_export", str(target))
    assert len(seen) == 1
    temp_name, temp_text = seen[0]
    assert temp_name != "out.yaml"
    assert temp_text == target.read_text() == export_text()


def test_an_invalid_version_of_an_existing_profile_is_refused_without_replace(seeded, tmp_path):
    """Existing profiles are kept as they are without --replace, but a file that holds an invalid
    profile is still an error, not a silent success."""
    path = write(
        tmp_path,
        """
        registries:
          default:
            default_profile_slug: default
            profiles:
              default:
                runtime:
                  middlewares:
                    - name: sugestions
        """,
    )
    before = state()
    message = assert_import_fails(path)
    assert message.startswith(
        f"{path}:{line_of(path, '- name: sugestions')}: registries.default.profiles.default.runtime.middlewares[0].name: "
    ), message
    assert "unknown middleware 'sugestions'" in message
    assert state() == before


def test_an_unknown_default_of_an_existing_registry_is_refused_without_replace(seeded, tmp_path):
    path = write(tmp_path, "registries:\n  default:\n    default_profile_slug: nobody\n    profiles: {}\n")
    before = state()
    message = assert_import_fails(path)
    assert message.startswith(
        f"{path}:{line_of(path, 'default_profile_slug: nobody')}: registries.default.default_profile_slug: "
    ), message
    assert state() == before
