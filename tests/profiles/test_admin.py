"""The profiles admin goes through the service layer: versions, history, the default invariant and
validation hold exactly as they do for the API, and service errors land on the right form field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from profiles import services
from profiles.definitions import MiddlewareDefinition, definitions
from profiles.forms import ProfileAdminForm
from profiles.models import Profile, ProfileRevision, Registry
from tests.helpers import import_seed

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:profiles_profile_changelist"


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def seeded_admin(db) -> None:
    """The canonical seed registries, for pages that should render realistic data."""
    import_seed()


@pytest.fixture
def adm_registry(db) -> Registry:
    """Registry `adm` with `alpha` (its default, being the first) and `beta`, written by the services."""
    services.registry_create(slug="adm", display_name="Admin tests")
    services.profile_create(registry_slug="adm", slug="alpha", runtime={"system_prompt": "Alpha."})
    services.profile_create(registry_slug="adm", slug="beta", display_name="Beta", runtime={"system_prompt": "Beta."})
    return Registry.objects.get(slug="adm")


@pytest.fixture
def window_middleware(monkeypatch: pytest.MonkeyPatch) -> None:
    """`context_window` (config `max_turns` >= 1) as the chat app registers it; stubbed if it is missing."""
    if "context_window" not in definitions.middlewares:
        schema = {
            "type": "object",
            "properties": {"max_turns": {"type": "integer", "minimum": 1, "default": 20}},
            "additionalProperties": False,
        }
        stub = MiddlewareDefinition(
            name="context_window", version=1, display_name="Context window", description="", schema=schema
        )
        monkeypatch.setitem(definitions.middlewares, "context_window", stub)


@pytest.fixture
def staff_viewer(db) -> Client:
    """A staff user who may view profiles (and their versions) but not change them."""
    user = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="profiles", codename="view_profile"))
    client = Client()
    client.force_login(user)
    return client


def profile(slug: str, registry: str = "adm") -> Profile:
    return Profile.objects.select_related("registry").get(registry__slug=registry, slug=slug)


def change_url(obj: Profile) -> str:
    return reverse("admin:profiles_profile_change", args=[obj.pk])


def browser_data(client: Client, url: str, **overrides: str) -> dict[str, str]:
    """What a browser posts for the form rendered at `url` (hidden version included), with `overrides`."""
    form = client.get(url).context["adminform"].form
    data: dict[str, str] = {}
    for name, field in form.fields.items():
        value = form[name].value()  # prepared for its widget, as rendering does
        if isinstance(field, forms.BooleanField):
            if value:
                data[name] = "on"
        elif value is not None:
            data[name] = field.widget.format_value(value) or ""
    return {**data, **overrides}


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def form_errors(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 200, "expected the form again, with errors"
    return response.context["adminform"].form.errors


def versions(obj: Profile) -> list[int]:
    return list(ProfileRevision.objects.filter(profile_id_at_write=obj.pk).values_list("version", flat=True))


# --------------------------------------------------------------------------- rendering


def test_changelists_render(admin_client: Client, seeded_admin: None) -> None:
    for name in ("profile", "registry", "profilerevision", "profileselection"):
        response = admin_client.get(reverse(f"admin:profiles_{name}_changelist"))
        assert response.status_code == 200, name
    page = admin_client.get(reverse(CHANGELIST), {"registry__id__exact": Registry.objects.get(slug="default").pk})
    assert [str(p) for p in page.context["cl"].result_list] == ["default/agent", "default/analyst", "default/default"]


def test_change_form_renders_pretty_json_with_the_json_editor(admin_client: Client, seeded_admin: None) -> None:
    analyst = profile("analyst", "default")
    response = admin_client.get(change_url(analyst))
    assert response.status_code == 200
    html = response.content.decode()
    assert escape(json.dumps(analyst.runtime, indent=2)) in html
    assert 'src="/static/profiles/json_editor.js"' in html
    assert 'href="/static/profiles/json_editor.css"' in html
    assert "data-json-editor" in html
    assert reverse("admin:profiles_profile_versions", args=[analyst.pk]) in html
    assert 'name="slug"' not in html  # the slug is shown, never editable
    assert f'name="expected_version" value="{analyst.version}"' in html
    assert finders.find("profiles/json_editor.js") and finders.find("profiles/json_editor.css")
    assert "profiles/json_editor.js" in str(ProfileAdminForm().media)


def test_add_form_renders(admin_client: Client, adm_registry: Registry) -> None:
    response = admin_client.get(reverse("admin:profiles_profile_add"))
    assert response.status_code == 200
    assert b'name="slug"' in response.content and b'name="registry"' in response.content


# --------------------------------------------------------------------------- create and edit


def test_add_creates_version_1_attributed_to_the_admin_user(admin_client: Client, adm_registry: Registry) -> None:
    data = {
        "registry": str(adm_registry.pk),
        "slug": " Gamma ",
        "display_name": "Gamma",
        "description": "",
        "runtime": '{"system_prompt": "Gamma."}',
        "policy": "",
        "extensions": "{}",
    }
    response = admin_client.post(reverse("admin:profiles_profile_add"), data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors

    gamma = profile("gamma")  # stored canonical
    assert (gamma.version, gamma.source, gamma.created_by, gamma.updated_by) == (1, "admin", "admin", "admin")
    assert gamma.runtime == {"system_prompt": "Gamma."}
    assert gamma.policy["read_only"] is False  # normalised by the service
    assert versions(gamma) == [1]
    adm_registry.refresh_from_db()
    assert adm_registry.default_profile.slug == "alpha"


def test_add_with_set_default_makes_it_the_default(admin_client: Client, adm_registry: Registry) -> None:
    data = {"registry": str(adm_registry.pk), "slug": "gamma", "set_default": "on", "runtime": "{}"}
    assert admin_client.post(reverse("admin:profiles_profile_add"), data).status_code == 302
    adm_registry.refresh_from_db()
    assert adm_registry.default_profile.slug == "gamma"


def test_add_rejects_a_duplicate_or_bad_slug_on_the_slug_field(admin_client: Client, adm_registry: Registry) -> None:
    url = reverse("admin:profiles_profile_add")
    errors = form_errors(admin_client.post(url, {"registry": str(adm_registry.pk), "slug": " ALPHA "}))
    assert any("already exists" in e for e in errors["slug"])
    errors = form_errors(admin_client.post(url, {"registry": str(adm_registry.pk), "slug": "-bad"}))
    assert errors["slug"][0].startswith("slug: invalid slug")
    assert Profile.objects.filter(registry=adm_registry).count() == 2


def test_edit_bumps_versions_by_one_and_records_a_revision(admin_client: Client, adm_registry: Registry) -> None:
    beta = profile("beta")
    registry_version = adm_registry.version
    url = change_url(beta)
    data = browser_data(admin_client, url, runtime=json.dumps({"system_prompt": "Beta, edited."}))

    response = admin_client.post(url, data)

    assert response.status_code == 302
    edited = profile("beta")
    assert edited.version == beta.version + 1
    assert (edited.runtime, edited.updated_by, edited.source) == ({"system_prompt": "Beta, edited."}, "admin", "admin")
    assert edited.created_by == beta.created_by
    adm_registry.refresh_from_db()
    assert adm_registry.version == registry_version + 1
    history = admin_client.get(reverse("admin:profiles_profile_versions", args=[beta.pk]))
    assert history.status_code == 200
    assert [r["version"] for r in history.context["revisions"]] == [2, 1]
    assert history.context["revisions"][0]["change"] == "updated runtime"
    assert history.context["revisions"][0]["by"] == "admin"


def test_saving_an_unchanged_form_writes_nothing(admin_client: Client, adm_registry: Registry) -> None:
    beta = profile("beta")
    url = change_url(beta)
    assert admin_client.post(url, browser_data(admin_client, url)).status_code == 302
    assert profile("beta").version == beta.version


def test_invalid_middleware_config_is_shown_on_runtime_and_saves_nothing(
    admin_client: Client, adm_registry: Registry, window_middleware: None
) -> None:
    beta = profile("beta")
    runtime = {"middlewares": [{"name": "context_window", "config": {"max_turns": 0}}]}
    url = change_url(beta)

    response = admin_client.post(url, browser_data(admin_client, url, runtime=json.dumps(runtime)))

    errors = form_errors(response)
    assert errors["runtime"] == ["runtime.middlewares[0].config.max_turns: 0 is less than the minimum of 1"]
    assert escape("runtime.middlewares[0].config.max_turns") in response.content.decode()
    after = profile("beta")
    assert (after.version, after.runtime) == (beta.version, beta.runtime)
    assert versions(after) == versions(beta)


def test_every_service_error_lands_on_its_own_field(admin_client: Client, adm_registry: Registry) -> None:
    beta = profile("beta")
    url = change_url(beta)
    data = browser_data(
        admin_client,
        url,
        policy=json.dumps({"allowed_override_keys": ["tools"], "denied_override_keys": ["tools"]}),
        extensions=json.dumps({"x.y@v0": 1}),
    )
    errors = form_errors(admin_client.post(url, data))
    assert errors["policy"] == ["policy.override_keys: keys both allowed and denied: tools"]
    assert errors["extensions"][0].startswith("extensions[x.y@v0]: ")
    assert profile("beta").version == beta.version


def test_stale_expected_version_is_a_conflict_and_saves_nothing(admin_client: Client, adm_registry: Registry) -> None:
    beta = profile("beta")
    url = change_url(beta)
    data = browser_data(admin_client, url, runtime=json.dumps({"system_prompt": "Mine."}))
    # Someone else saves first.
    services.profile_update(registry_slug="adm", slug="beta", changes={"description": "Theirs."})

    response = admin_client.post(url, data)

    assert form_errors(response)["__all__"] == [
        f"someone else changed this profile (now version {beta.version + 1}); reload"
    ]
    after = profile("beta")
    assert (after.version, after.runtime, after.description) == (beta.version + 1, beta.runtime, "Theirs.")


def test_read_only_profile_cannot_be_edited(admin_client: Client, adm_registry: Registry) -> None:
    services.profile_create(registry_slug="adm", slug="locked", policy={"read_only": True})
    locked = profile("locked")
    url = change_url(locked)

    response = admin_client.post(url, browser_data(admin_client, url, description="changed"))

    assert form_errors(response)["__all__"] == ["policy.read_only: profile 'locked' is read-only"]
    assert profile("locked").version == locked.version
    assert profile("locked").description == ""


def test_read_only_profile_can_still_be_made_default_from_its_form(
    admin_client: Client, adm_registry: Registry
) -> None:
    services.profile_create(registry_slug="adm", slug="locked", policy={"read_only": True})
    url = change_url(profile("locked"))
    assert admin_client.post(url, browser_data(admin_client, url, set_default="on")).status_code == 302
    adm_registry.refresh_from_db()
    assert adm_registry.default_profile.slug == "locked"


def test_invalid_json_is_a_form_error_on_that_field(admin_client: Client, adm_registry: Registry) -> None:
    beta = profile("beta")
    url = change_url(beta)
    response = admin_client.post(url, browser_data(admin_client, url, runtime='{"system_prompt": "x",}'))
    errors = form_errors(response)
    assert errors["runtime"][0].startswith("Invalid JSON: ")
    assert escape('{"system_prompt": "x",}') in response.content.decode()  # kept for fixing
    assert profile("beta").version == beta.version


def test_the_form_never_changes_the_slug_or_registry(admin_client: Client, adm_registry: Registry) -> None:
    other = services.registry_create(slug="other")
    beta = profile("beta")
    url = change_url(beta)
    data = browser_data(admin_client, url, slug="renamed", registry=str(other.pk), display_name="Beta 2")

    assert admin_client.post(url, data).status_code == 302

    after = Profile.objects.get(pk=beta.pk)
    assert (after.slug, after.registry_id, after.display_name) == ("beta", adm_registry.pk, "Beta 2")
    assert "slug" not in ProfileAdminForm(instance=after).fields


# --------------------------------------------------------------------------- delete and default


def test_deleting_the_default_through_the_delete_view_is_refused(admin_client: Client, adm_registry: Registry) -> None:
    alpha = profile("alpha")
    url = reverse("admin:profiles_profile_delete", args=[alpha.pk])
    confirmation = admin_client.get(url)
    assert confirmation.status_code == 200 and not confirmation.context["protected"]

    response = admin_client.post(url, {"post": "yes"})

    assert response.status_code == 302 and response.url == change_url(alpha)
    assert any("is the registry default: set another default first" in m for m in messages_of(response))
    assert Profile.objects.filter(pk=alpha.pk).exists()
    assert Registry.objects.get(pk=adm_registry.pk).version == adm_registry.version


def test_delete_view_deletes_through_the_service(admin_client: Client, adm_registry: Registry) -> None:
    beta = profile("beta")
    response = admin_client.post(reverse("admin:profiles_profile_delete", args=[beta.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Profile.objects.filter(pk=beta.pk).exists()
    assert Registry.objects.get(pk=adm_registry.pk).version == adm_registry.version + 1


def test_the_last_profile_may_go_even_though_it_is_the_default(admin_client: Client, db: None) -> None:
    """Django alone would call the registry's default pointer a protected relation; the service decides."""
    services.registry_create(slug="solo")
    only = services.profile_create(registry_slug="solo", slug="only")
    response = admin_client.post(reverse("admin:profiles_profile_delete", args=[only.pk]), {"post": "yes"})
    assert response.status_code == 302 and response.url == reverse(CHANGELIST)
    registry = Registry.objects.get(slug="solo")
    assert registry.default_profile is None and not registry.profiles.exists()


def test_bulk_delete_refuses_the_default_and_deletes_the_rest(admin_client: Client, adm_registry: Registry) -> None:
    services.profile_create(registry_slug="adm", slug="gamma")
    alpha, beta = profile("alpha"), profile("beta")
    selected = {"action": "delete_selected", "_selected_action": [str(alpha.pk), str(beta.pk)]}

    confirmation = admin_client.post(reverse(CHANGELIST), selected)
    assert confirmation.status_code == 200 and not confirmation.context["protected"]
    assert Profile.objects.filter(registry=adm_registry).count() == 3

    response = admin_client.post(reverse(CHANGELIST), {**selected, "post": "yes"})

    assert response.status_code == 302
    assert any("adm/alpha was not deleted" in m and "set another default first" in m for m in messages_of(response))
    assert set(Profile.objects.filter(registry=adm_registry).values_list("slug", flat=True)) == {"alpha", "gamma"}


def test_bulk_delete_of_only_the_default_deletes_nothing(admin_client: Client, adm_registry: Registry) -> None:
    alpha = profile("alpha")
    data = {"action": "delete_selected", "_selected_action": [str(alpha.pk)], "post": "yes"}
    response = admin_client.post(reverse(CHANGELIST), data)
    assert any("set another default first" in m for m in messages_of(response))
    assert Profile.objects.filter(registry=adm_registry).count() == 2


def test_make_default_action(admin_client: Client, adm_registry: Registry) -> None:
    beta = profile("beta")
    data = {"action": "make_default", "_selected_action": [str(beta.pk)]}

    response = admin_client.post(reverse(CHANGELIST), data)

    assert response.status_code == 302
    assert "beta is now the default profile of adm." in messages_of(response)
    registry = Registry.objects.get(pk=adm_registry.pk)
    assert registry.default_profile_id == beta.pk
    assert registry.version == adm_registry.version + 1


def test_make_default_action_needs_exactly_one_profile(admin_client: Client, adm_registry: Registry) -> None:
    ids = [str(p.pk) for p in Profile.objects.filter(registry=adm_registry)]
    response = admin_client.post(reverse(CHANGELIST), {"action": "make_default", "_selected_action": ids})
    assert "Select exactly one profile to make it the default." in messages_of(response)
    assert Registry.objects.get(pk=adm_registry.pk).default_profile.slug == "alpha"


# --------------------------------------------------------------------------- versions and restore


def test_versions_view_lists_versions_and_restore_writes_a_new_version(
    admin_client: Client, adm_registry: Registry
) -> None:
    for prompt in ("Second.", "Third."):
        services.profile_update(registry_slug="adm", slug="beta", changes={"runtime": {"system_prompt": prompt}})
    beta = profile("beta")
    url = reverse("admin:profiles_profile_versions", args=[beta.pk])

    listing = admin_client.get(url)
    assert listing.status_code == 200
    assert [r["version"] for r in listing.context["revisions"]] == [3, 2, 1]
    version_1 = reverse("admin:profiles_profile_version", args=[beta.pk, 1])
    assert version_1 in listing.content.decode()
    assert reverse("admin:profiles_profile_restore", args=[beta.pk, 1]) in listing.content.decode()
    detail = admin_client.get(version_1)
    assert detail.status_code == 200
    assert escape('"system_prompt": "Beta."') in detail.content.decode()

    restore = admin_client.post(reverse("admin:profiles_profile_restore", args=[beta.pk, 1]), {"expected_version": "3"})

    assert restore.status_code == 302 and restore.url == url
    assert "Restored version 1 as version 4." in messages_of(restore)
    restored = profile("beta")
    assert (restored.version, restored.runtime) == (4, {"system_prompt": "Beta."})
    assert (restored.updated_by, restored.source) == ("admin", "admin")
    latest = ProfileRevision.objects.get(profile_id_at_write=beta.pk, version=4)
    assert latest.change == "restored from version 1"
    assert versions(restored) == [4, 3, 2, 1]


def test_restore_with_a_stale_version_is_refused(admin_client: Client, adm_registry: Registry) -> None:
    services.profile_update(registry_slug="adm", slug="beta", changes={"description": "v2"})
    beta = profile("beta")
    response = admin_client.post(
        reverse("admin:profiles_profile_restore", args=[beta.pk, 1]), {"expected_version": "1"}
    )
    assert any(m.startswith("Version 1 was not restored") for m in messages_of(response))
    assert profile("beta").version == beta.version


def test_restore_needs_post_and_change_permission(
    admin_client: Client, staff_viewer: Client, adm_registry: Registry
) -> None:
    services.profile_update(registry_slug="adm", slug="beta", changes={"description": "v2"})
    beta = profile("beta")
    restore = reverse("admin:profiles_profile_restore", args=[beta.pk, 1])
    assert admin_client.get(restore).status_code == 405

    listing = staff_viewer.get(reverse("admin:profiles_profile_versions", args=[beta.pk]))
    assert listing.status_code == 200 and restore not in listing.content.decode()
    assert staff_viewer.get(change_url(beta)).status_code == 200  # view-only form renders
    assert staff_viewer.post(restore).status_code == 403
    assert profile("beta").version == beta.version


def test_restore_is_csrf_protected(adm_registry: Registry, admin_user: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    beta = profile("beta")
    assert client.post(reverse("admin:profiles_profile_restore", args=[beta.pk, 1])).status_code == 403


# --------------------------------------------------------------------------- registries


def test_registry_add_and_edit_go_through_the_services(admin_client: Client, adm_registry: Registry) -> None:
    add = admin_client.post(reverse("admin:profiles_registry_add"), {"slug": " New ", "display_name": ""})
    assert add.status_code == 302
    assert Registry.objects.get(slug="new").display_name == "new"

    url = reverse("admin:profiles_registry_change", args=[adm_registry.pk])
    beta = profile("beta")
    response = admin_client.post(url, browser_data(admin_client, url, default_profile=str(beta.pk), description="D"))

    assert response.status_code == 302
    registry = Registry.objects.get(pk=adm_registry.pk)
    assert (registry.default_profile_id, registry.description, registry.slug) == (beta.pk, "D", "adm")
    assert registry.version == adm_registry.version + 1  # one save, one version step (default and text)


def test_registry_default_is_limited_to_its_own_profiles(admin_client: Client, adm_registry: Registry) -> None:
    services.registry_create(slug="other")
    stranger = services.profile_create(registry_slug="other", slug="stranger")
    url = reverse("admin:profiles_registry_change", args=[adm_registry.pk])
    form = admin_client.get(url).context["adminform"].form
    assert set(form.fields["default_profile"].queryset.values_list("slug", flat=True)) == {"alpha", "beta"}

    errors = form_errors(admin_client.post(url, browser_data(admin_client, url, default_profile=str(stranger.pk))))
    assert "default_profile" in errors
    errors = form_errors(admin_client.post(url, browser_data(admin_client, url, default_profile="")))
    assert "default_profile" in errors  # a registry with profiles always has a default
    assert Registry.objects.get(pk=adm_registry.pk).default_profile.slug == "alpha"


def test_registry_stale_version_is_a_conflict(admin_client: Client, adm_registry: Registry) -> None:
    url = reverse("admin:profiles_registry_change", args=[adm_registry.pk])
    data = browser_data(admin_client, url, description="Mine")
    services.profile_create(registry_slug="adm", slug="gamma")  # bumps the registry version
    errors = form_errors(admin_client.post(url, data))
    assert errors["__all__"] == [f"someone else changed this registry (now version {adm_registry.version + 1}); reload"]
    assert Registry.objects.get(pk=adm_registry.pk).description == ""


def test_only_superusers_delete_registries(admin_client: Client, adm_registry: Registry) -> None:
    staff = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="profiles"))
    client = Client()
    client.force_login(staff)
    url = reverse("admin:profiles_registry_delete", args=[adm_registry.pk])
    assert client.post(url, {"post": "yes"}).status_code == 403

    confirmation = admin_client.get(url)
    assert confirmation.status_code == 200 and not confirmation.context["protected"]
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not Registry.objects.filter(pk=adm_registry.pk).exists()
    assert not Profile.objects.filter(registry__slug="adm").exists()


# --------------------------------------------------------------------------- inspection-only models


def test_revisions_and_selections_are_read_only(admin_client: Client, adm_registry: Registry) -> None:
    revision = ProfileRevision.objects.filter(profile_slug="beta").first()
    url = reverse("admin:profiles_profilerevision_change", args=[revision.pk])
    page = admin_client.get(url)
    assert page.status_code == 200 and escape('"system_prompt": "Beta."') in page.content.decode()
    assert admin_client.post(url, {"change": "rewritten"}).status_code == 403
    assert admin_client.get(reverse("admin:profiles_profilerevision_add")).status_code == 403
    assert admin_client.get(reverse("admin:profiles_profileselection_add")).status_code == 403
    assert ProfileRevision.objects.get(pk=revision.pk).change == "created"


def test_a_blank_display_name_is_a_field_error_in_the_admin_and_writes_no_version(
    admin_client: Client, adm_registry: Registry
) -> None:
    alpha = profile("alpha")
    before = versions(alpha)
    errors = form_errors(
        admin_client.post(change_url(alpha), browser_data(admin_client, change_url(alpha), display_name=""))
    )
    assert "must not be blank" in errors["display_name"][0]
    assert versions(alpha) == before
