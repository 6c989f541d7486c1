"""profiles.services: versions, attribution, the default-profile invariant, history and selection."""

from __future__ import annotations

import pytest

from profiles import selectors, services
from profiles.api.errors import http_status
from profiles.errors import Conflict, InvalidInput, NotFound, PreconditionFailed, ReadOnly, VersionConflict
from profiles.models import Profile, ProfileRevision, ProfileSelection, Registry

from .factories import ProfileFactory, RegistryFactory, UserFactory
from .support import canonical

pytestmark = pytest.mark.django_db

UNKNOWN_EXTENSIONS = {
    "acme.widget@v3": {"z": [1, 2.5, "x", None], "a": {"deep": True}, "n": 10.0},
    "webchat.starter_suggestions@v1": {"items": ["Hello"]},
}


def registry_version(slug: str) -> int:
    return Registry.objects.get(slug=slug).version


def row(registry: str, slug: str) -> Profile:
    return Profile.objects.get(registry__slug=registry, slug=slug)


def revision_count(profile: Profile) -> int:
    return ProfileRevision.objects.filter(profile_id_at_write=profile.pk).count()


def update(registry: str, slug: str, **kwargs) -> Profile:
    return services.profile_update(registry_slug=registry, slug=slug, **kwargs)


@pytest.fixture
def reg() -> Registry:
    return RegistryFactory(slug="team")


# --------------------------------------------------------------------------- versions


def test_a_new_profile_starts_at_version_1_with_one_revision(reg):
    profile = ProfileFactory(registry=reg, slug="p")
    assert profile.version == 1
    assert list(ProfileRevision.objects.filter(profile_id_at_write=profile.pk).values_list("version", "change")) == [
        (1, "created")
    ]


def test_each_write_adds_exactly_one_to_the_profile_version(reg):
    ProfileFactory(registry=reg, slug="p")
    assert update("team", "p", changes={"description": "two"}).version == 2
    assert update("team", "p", changes={"runtime": {"tools": ["calculator"]}, "display_name": "P3"}).version == 3
    assert update("team", "p", changes={"extensions": {"acme.x@v1": 1}}).version == 4
    assert revision_count(row("team", "p")) == 4


def test_a_no_op_write_does_not_bump_any_version(reg):
    ProfileFactory(
        registry=reg,
        slug="p",
        description="same",
        runtime={"middlewares": [{"name": "suggestions"}], "tools": ["calculator"]},
        policy={"allow_overrides": True, "allowed_override_keys": ["systemPrompt"]},
    )
    before_registry = registry_version("team")
    profile = update(
        "team",
        "p",
        changes={
            "description": "same",
            # equal after canonicalisation: defaults filled in, override keys canonicalised
            "runtime": {"middlewares": [{"name": "suggestions", "config": {"max_items": 3}}], "tools": ["calculator"]},
            "policy": {"allow_overrides": True, "allowed_override_keys": ["system_prompt"]},
        },
    )
    assert profile.version == 1
    assert revision_count(profile) == 1
    assert registry_version("team") == before_registry


def test_the_registry_version_counts_every_profile_write_and_default_change():
    registry = RegistryFactory(slug="counted")
    assert registry.version == 1
    ProfileFactory(registry=registry, slug="a")  # create + becomes the default
    assert registry_version("counted") == 3
    ProfileFactory(registry=registry, slug="b")
    assert registry_version("counted") == 4
    update("counted", "b", changes={"description": "x"})
    assert registry_version("counted") == 5
    update("counted", "b", changes={"description": "x"})  # no-op
    assert registry_version("counted") == 5
    services.registry_set_default(registry_slug="counted", slug="b")
    assert registry_version("counted") == 6
    services.registry_set_default(registry_slug="counted", slug="b")  # already the default
    assert registry_version("counted") == 6
    services.profile_delete(registry_slug="counted", slug="a")
    assert registry_version("counted") == 7
    update("counted", "b", changes={"description": "y"}, set_default=True)  # write, already default
    assert registry_version("counted") == 8


# --------------------------------------------------------------------------- optimistic concurrency


def test_a_stale_expected_version_raises_version_conflict_and_changes_nothing(reg):
    ProfileFactory(registry=reg, slug="p", description="one")
    update("team", "p", changes={"description": "two"})
    before_registry = registry_version("team")
    with pytest.raises(VersionConflict) as caught:
        update("team", "p", changes={"description": "three"}, expected_version=1)
    assert http_status(caught.value) == 409
    assert caught.value.as_dict()["expected"] == 1
    assert caught.value.as_dict()["actual"] == 2
    profile = row("team", "p")
    assert (profile.version, profile.description) == (2, "two")
    assert revision_count(profile) == 2
    assert registry_version("team") == before_registry


def test_a_matching_expected_version_is_accepted(reg):
    ProfileFactory(registry=reg, slug="p")
    assert update("team", "p", changes={"description": "two"}, expected_version=1).version == 2
    assert update("team", "p", changes={"description": "three"}, expected_version="2").version == 3


@pytest.mark.parametrize("bad", [0, -1, "one", True, ""])
def test_an_invalid_expected_version_is_rejected(reg, bad):
    ProfileFactory(registry=reg, slug="p")
    with pytest.raises(InvalidInput) as caught:
        update("team", "p", changes={"description": "x"}, expected_version=bad)
    assert caught.value.field == "expected_version"
    assert row("team", "p").version == 1


def test_an_if_match_mismatch_raises_precondition_failed_and_changes_nothing(reg):
    ProfileFactory(registry=reg, slug="p", description="one")
    with pytest.raises(PreconditionFailed) as caught:
        update("team", "p", changes={"description": "two"}, if_match=7)
    assert http_status(caught.value) == 412
    assert (caught.value.as_dict()["expected"], caught.value.as_dict()["actual"]) == (7, 1)
    assert row("team", "p").description == "one"


def test_a_matching_if_match_is_accepted(reg):
    ProfileFactory(registry=reg, slug="p")
    assert update("team", "p", changes={"description": "two"}, if_match=1).version == 2


@pytest.mark.parametrize(("header", "version"), [('"1"', 1), ('W/"12"', 12), ("3", 3), (' "4" ', 4)])
def test_the_view_parses_an_if_match_header_as_a_version(header, version):
    from profiles.validation import parse_version

    assert parse_version(header, field="If-Match") == version


@pytest.mark.parametrize("header", ['"abc"', '"0"', "", '"-1"', "*"])
def test_a_malformed_if_match_is_invalid_input_on_the_header(header):
    from profiles.validation import parse_version

    with pytest.raises(InvalidInput) as caught:
        parse_version(header, field="If-Match")
    assert caught.value.field == "If-Match"


def test_a_stale_expected_version_on_delete_changes_nothing(reg):
    ProfileFactory(registry=reg, slug="a")
    ProfileFactory(registry=reg, slug="b")
    with pytest.raises(VersionConflict):
        services.profile_delete(registry_slug="team", slug="b", expected_version=2)
    assert Profile.objects.filter(slug="b").exists()


def test_set_default_checks_the_registry_version(reg):
    ProfileFactory(registry=reg, slug="a")
    ProfileFactory(registry=reg, slug="b")
    version = registry_version("team")
    with pytest.raises(VersionConflict) as caught:
        services.registry_set_default(registry_slug="team", slug="b", expected_version=version - 1)
    assert (caught.value.as_dict()["expected"], caught.value.as_dict()["actual"]) == (version - 1, version)
    assert Registry.objects.get(slug="team").default_profile.slug == "a"
    services.registry_set_default(registry_slug="team", slug="b", expected_version=version)
    assert Registry.objects.get(slug="team").default_profile.slug == "b"


# --------------------------------------------------------------------------- the default-profile invariant


def test_the_first_profile_of_an_empty_registry_becomes_its_default(reg):
    assert reg.default_profile_id is None
    first = ProfileFactory(registry=reg, slug="first")
    ProfileFactory(registry=reg, slug="second")
    assert Registry.objects.get(slug="team").default_profile_id == first.pk


def test_deleting_the_default_while_others_exist_is_a_conflict_and_changes_nothing(reg):
    ProfileFactory(registry=reg, slug="a")
    ProfileFactory(registry=reg, slug="b")
    before = registry_version("team")
    with pytest.raises(Conflict) as caught:
        services.profile_delete(registry_slug="team", slug="a")
    assert http_status(caught.value) == 409
    assert "set another default first" in caught.value.message
    registry = Registry.objects.get(slug="team")
    assert registry.default_profile.slug == "a"
    assert registry.version == before
    assert set(registry.profiles.values_list("slug", flat=True)) == {"a", "b"}


def test_deleting_the_last_profile_clears_the_default(reg):
    ProfileFactory(registry=reg, slug="only")
    before = registry_version("team")
    services.profile_delete(registry_slug="team", slug="only")
    registry = Registry.objects.get(slug="team")
    assert registry.default_profile_id is None
    assert registry.version == before + 1
    again = ProfileFactory(registry=reg, slug="again")
    assert Registry.objects.get(slug="team").default_profile_id == again.pk


def test_a_non_default_profile_can_be_deleted_after_the_default_moved(reg):
    ProfileFactory(registry=reg, slug="a")
    ProfileFactory(registry=reg, slug="b")
    services.registry_set_default(registry_slug="team", slug="b")
    services.profile_delete(registry_slug="team", slug="a")
    registry = Registry.objects.get(slug="team")
    assert registry.default_profile.slug == "b"
    assert list(registry.profiles.values_list("slug", flat=True)) == ["b"]


def test_set_default_on_create_makes_the_new_profile_the_default_in_one_step(reg):
    ProfileFactory(registry=reg, slug="a")
    before = registry_version("team")
    ProfileFactory(registry=reg, slug="b", set_default=True)
    registry = Registry.objects.get(slug="team")
    assert registry.default_profile.slug == "b"
    assert registry.version == before + 2  # one create + one default change


def test_a_failed_create_with_set_default_changes_nothing(reg):
    ProfileFactory(registry=reg, slug="a")
    before = registry_version("team")
    with pytest.raises(InvalidInput):
        ProfileFactory(registry=reg, slug="b", set_default=True, runtime={"tools": ["nope"]})
    registry = Registry.objects.get(slug="team")
    assert (registry.default_profile.slug, registry.version) == ("a", before)
    assert not Profile.objects.filter(slug="b").exists()


def test_set_default_on_patch_is_applied_with_the_write(reg):
    ProfileFactory(registry=reg, slug="a")
    ProfileFactory(registry=reg, slug="b")
    before = registry_version("team")
    profile = update("team", "b", changes={"description": "now default"}, set_default=True)
    registry = Registry.objects.get(slug="team")
    assert registry.default_profile_id == profile.pk
    assert profile.version == 2
    assert registry.version == before + 2


def test_set_default_on_patch_without_changes_only_moves_the_default(reg):
    ProfileFactory(registry=reg, slug="a")
    ProfileFactory(registry=reg, slug="b")
    before = registry_version("team")
    profile = update("team", "b", changes={}, set_default=True)
    assert profile.version == 1
    assert Registry.objects.get(slug="team").default_profile_id == profile.pk
    assert registry_version("team") == before + 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"changes": {"runtime": {"tools": ["nope"]}}},
        {"changes": {"description": "x"}, "expected_version": 5},
        {"changes": {"description": "x"}, "if_match": '"5"'},
    ],
    ids=["invalid", "stale", "if-match"],
)
def test_a_failed_patch_with_set_default_does_not_move_the_default(reg, kwargs):
    ProfileFactory(registry=reg, slug="a")
    ProfileFactory(registry=reg, slug="b")
    before = registry_version("team")
    with pytest.raises((InvalidInput, VersionConflict, PreconditionFailed)):
        update("team", "b", set_default=True, **kwargs)
    registry = Registry.objects.get(slug="team")
    assert (registry.default_profile.slug, registry.version) == ("a", before)
    assert row("team", "b").version == 1


def test_every_registry_with_profiles_keeps_a_default_among_its_profiles(seeded):
    for registry in Registry.objects.all():
        assert registry.profiles.exists()
        assert registry.default_profile is not None
        assert registry.default_profile.registry_id == registry.pk


# --------------------------------------------------------------------------- read-only


@pytest.fixture
def read_only(reg) -> Profile:
    ProfileFactory(registry=reg, slug="writable")
    return ProfileFactory(registry=reg, slug="locked", description="frozen", policy={"read_only": True})


def test_a_read_only_profile_cannot_be_updated(read_only):
    with pytest.raises(ReadOnly) as caught:
        update("team", "locked", changes={"description": "thawed"})
    assert caught.value.code == "read_only"
    profile = row("team", "locked")
    assert (profile.version, profile.description) == (1, "frozen")


def test_a_read_only_profile_cannot_unlock_itself(read_only):
    with pytest.raises(ReadOnly):
        update("team", "locked", changes={"policy": {"read_only": False}})
    assert row("team", "locked").is_read_only


def test_a_read_only_profile_cannot_be_deleted(read_only):
    with pytest.raises(ReadOnly):
        services.profile_delete(registry_slug="team", slug="locked")
    assert Profile.objects.filter(slug="locked").exists()


def test_a_read_only_profile_cannot_be_restored(read_only):
    with pytest.raises(ReadOnly):
        services.profile_restore(registry_slug="team", slug="locked", version=1)
    assert row("team", "locked").version == 1


def test_a_read_only_profile_can_be_made_the_default(read_only):
    services.registry_set_default(registry_slug="team", slug="locked")
    assert Registry.objects.get(slug="team").default_profile_id == read_only.pk
    assert row("team", "locked").version == 1


def test_an_import_may_rewrite_a_read_only_profile(read_only):
    profile = update("team", "locked", changes={"description": "from file"}, source="import")
    assert (profile.version, profile.description, profile.source) == (2, "from file", "import")


# --------------------------------------------------------------------------- history, restore, attribution


def test_history_lists_versions_newest_first_with_who_what_and_how(reg):
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    ProfileFactory(registry=reg, slug="p", actor=alice, source="api")
    update("team", "p", changes={"description": "two", "display_name": "Two"}, actor=bob, source="admin")
    update("team", "p", changes={"runtime": {"tools": ["calculator"]}}, actor=alice)
    history = list(
        selectors.profile_revisions(profile=row("team", "p")).values_list("version", "updated_by", "source", "change")
    )
    assert history == [
        (3, "alice", "api", "updated runtime"),
        (2, "bob", "admin", "updated description, display_name"),
        (1, "alice", "api", "created"),
    ]


def test_each_revision_keeps_the_document_as_it_was(reg):
    ProfileFactory(registry=reg, slug="p", description="one")
    update("team", "p", changes={"description": "two"})
    profile = row("team", "p")
    documents = {r.version: r.document for r in selectors.profile_revisions(profile=profile)}
    assert documents[1]["description"] == "one"
    assert documents[1]["metadata"]["version"] == 1
    assert documents[2]["description"] == "two"


def test_restore_writes_a_new_version_with_the_old_content(reg):
    ProfileFactory(registry=reg, slug="p", description="one", runtime={"system_prompt": "v1"})
    update("team", "p", changes={"description": "two", "runtime": {"system_prompt": "v2", "tools": ["calculator"]}})
    restored = services.profile_restore(registry_slug="team", slug="p", version=1)
    assert restored.version == 3
    assert restored.description == "one"
    assert restored.runtime == {"system_prompt": "v1"}
    latest = selectors.profile_revisions(profile=restored).first()
    assert (latest.version, latest.change) == (3, "restored from version 1")
    assert revision_count(restored) == 3


def test_restoring_the_current_content_still_writes_a_new_version(reg):
    """The spec: a restore writes a new version, so history shows that it happened."""
    ProfileFactory(registry=reg, slug="p", description="one")
    registry_version = Registry.objects.get(slug="team").version
    restored = services.profile_restore(registry_slug="team", slug="p", version=1)
    assert restored.version == 2
    assert selectors.profile_revisions(profile=restored).first().change == "restored from version 1"
    assert Registry.objects.get(slug="team").version == registry_version + 1


def test_restore_of_an_unknown_version_is_not_found(reg):
    ProfileFactory(registry=reg, slug="p")
    with pytest.raises(NotFound) as caught:
        services.profile_restore(registry_slug="team", slug="p", version=9)
    assert caught.value.field == "version"


def test_restore_honours_expected_version(reg):
    ProfileFactory(registry=reg, slug="p", description="one")
    update("team", "p", changes={"description": "two"})
    with pytest.raises(VersionConflict):
        services.profile_restore(registry_slug="team", slug="p", version=1, expected_version=1)
    assert row("team", "p").description == "two"


def test_created_fields_never_change_and_updated_fields_follow_the_writer(reg):
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    created = ProfileFactory(registry=reg, slug="p", actor=alice, source="api")
    update("team", "p", changes={"description": "x"}, actor=bob, source="admin")
    services.profile_restore(registry_slug="team", slug="p", version=1, actor=bob)
    profile = row("team", "p")
    assert (profile.created_by, profile.created_at_ms) == ("alice", created.created_at_ms)
    assert (profile.updated_by, profile.source) == ("bob", "api")
    assert profile.updated_at_ms >= created.updated_at_ms


def test_metadata_cannot_be_written_through_an_update(reg):
    ProfileFactory(registry=reg, slug="p")
    with pytest.raises(InvalidInput) as caught:
        update("team", "p", changes={"metadata": {"version": 99}})
    assert caught.value.field == "metadata"
    assert row("team", "p").version == 1


# --------------------------------------------------------------------------- extensions through writes


def test_unknown_extensions_survive_an_unrelated_update_exactly(reg):
    ProfileFactory(registry=reg, slug="p", extensions=UNKNOWN_EXTENSIONS)
    update("team", "p", changes={"description": "unrelated", "runtime": {"tools": ["calculator"]}})
    profile = row("team", "p")
    assert profile.version == 2
    assert canonical(profile.extensions) == canonical(UNKNOWN_EXTENSIONS)


def test_an_update_with_extensions_replaces_the_whole_map(reg):
    ProfileFactory(registry=reg, slug="p", extensions=UNKNOWN_EXTENSIONS)
    update("team", "p", changes={"extensions": {"Acme.Other@V1": [1]}})
    assert row("team", "p").extensions == {"acme.other@v1": [1]}


# --------------------------------------------------------------------------- validation through writes


def test_create_canonicalises_the_slug_and_rejects_duplicates(reg):
    assert ProfileFactory(registry=reg, slug=" Analyst ").slug == "analyst"
    with pytest.raises(Conflict) as caught:
        ProfileFactory(registry=reg, slug="ANALYST")
    assert caught.value.field == "slug"


def test_create_reports_the_first_invalid_field(reg):
    with pytest.raises(InvalidInput) as caught:
        ProfileFactory(
            registry=reg, slug="p", runtime={"middlewares": [{"name": "context_window", "config": {"max_turns": 0}}]}
        )
    assert caught.value.field == "runtime.middlewares[0].config.max_turns"
    assert not Profile.objects.filter(slug="p").exists()
    assert registry_version("team") == 1


def test_create_in_an_unknown_registry_is_not_found():
    with pytest.raises(NotFound) as caught:
        services.profile_create(registry_slug="ghost", slug="p")
    assert caught.value.field == "registry"


def test_registry_slugs_are_unique():
    RegistryFactory(slug="dup")
    with pytest.raises(Conflict):
        services.registry_create(slug=" DUP ")


# --------------------------------------------------------------------------- selection


def test_select_stores_one_selection_per_user_and_mount(seeded):
    user = UserFactory(username="chooser")
    services.profile_select(user=user, mount="chat", registry_slug="default", slug="analyst")
    services.profile_select(user=user, mount="inventory", registry_slug="inventory", slug="analyst")
    services.profile_select(user=user, mount="chat", registry_slug="default", slug=" Agent ")
    rows = (
        ProfileSelection.objects.filter(user=user)
        .order_by("mount")
        .values_list("mount", "registry_slug", "profile_slug")
    )
    assert list(rows) == [("chat", "default", "agent"), ("inventory", "inventory", "analyst")]


def test_select_of_an_unknown_profile_or_registry_is_not_found(seeded):
    user = UserFactory(username="chooser")
    with pytest.raises(NotFound) as caught:
        services.profile_select(user=user, mount="chat", registry_slug="default", slug="ghost")
    assert caught.value.field == "slug"
    with pytest.raises(NotFound) as caught:
        services.profile_select(user=user, mount="chat", registry_slug="ghost", slug="default")
    assert caught.value.field == "registry"
    assert not ProfileSelection.objects.filter(user=user).exists()


def test_a_selection_whose_profile_was_deleted_falls_back_to_the_default(seeded):
    user = UserFactory(username="chooser")
    services.profile_select(user=user, mount="chat", registry_slug="default", slug="agent")
    assert selectors.current_profile(user=user, mount="chat", default_registry="default").source == "selection"
    services.profile_delete(registry_slug="default", slug="agent")
    current = selectors.current_profile(user=user, mount="chat", default_registry="default")
    assert (current.registry.slug, current.profile.slug, current.source) == ("default", "default", "default")


def test_domain_errors_carry_no_http_status_and_map_to_one_in_the_api_handler():
    from chat.errors import ConversationForbidden, QueueFull
    from profiles.api.errors import http_status
    from profiles.errors import Conflict, InvalidInput, NotFound, PolicyViolation, PreconditionFailed, ReadOnly

    errors = {
        InvalidInput("x"): 400,
        NotFound("x"): 404,
        PolicyViolation("x"): 403,
        ReadOnly("x"): 403,
        ConversationForbidden("x"): 403,
        Conflict("x"): 409,
        PreconditionFailed(expected=1, actual=2): 412,
        QueueFull("x"): 429,
    }
    assert {type(e).__name__: http_status(e) for e in errors} == {type(e).__name__: s for e, s in errors.items()}
    assert not any(hasattr(e, "status") for e in errors)


def test_registry_update_with_a_stale_expected_version_is_a_conflict_and_changes_nothing(db):
    services.registry_create(slug="reg", display_name="Reg")
    services.profile_create(registry_slug="reg", slug="one")
    services.profile_create(registry_slug="reg", slug="two")
    read = Registry.objects.get(slug="reg")
    services.registry_update(slug="reg", description="first", expected_version=read.version)
    with pytest.raises(VersionConflict) as caught:
        services.registry_update(slug="reg", description="second", default_profile="two", expected_version=read.version)
    assert (caught.value.extra["expected"], caught.value.extra["actual"]) == (read.version, read.version + 1)
    after = Registry.objects.get(slug="reg")
    assert (after.description, after.default_profile.slug, after.version) == ("first", "one", read.version + 1)


def test_registry_update_changes_text_and_default_in_one_version_step(db):
    services.registry_create(slug="reg")
    services.profile_create(registry_slug="reg", slug="one")
    services.profile_create(registry_slug="reg", slug="two")
    before = Registry.objects.get(slug="reg").version
    registry = services.registry_update(slug="reg", display_name="R", default_profile="two", expected_version=before)
    assert (registry.display_name, registry.default_profile.slug, registry.version) == ("R", "two", before + 1)
    with pytest.raises(NotFound):
        services.registry_update(slug="reg", default_profile="missing")
