"""Evaluations per version (#22), through both mounts: datasets (validation paths, JSON lines in and out,
cases from real turns), runs keyed by fingerprint whose cases are real turns of hidden conversations
(scored by contains/equals/regex/json_schema and a judge profile against a local fake provider), progress
and resumption after a worker stopped, comparison, and the promotion gate on labels and rollouts."""

from __future__ import annotations

import itertools
import json

import pytest
from asgiref.sync import async_to_sync
from rest_framework.test import APIClient

from chat.evaluations.runner import runner
from chat.models import Conversation, EvaluationRun
from profiles import services as profile_services

from .factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_registries", "fast_turns")]

CASES = [
    {"input": "what is 6 * 7?", "expect": {"contains": "42"}},
    {"input": "what is 2 + 2?", "expect": {"regex": "= 4\\b"}},
    {"input": "hello", "expect": {"equals": "nope"}},
]


@pytest.fixture
def admin_api() -> APIClient:
    client = APIClient()
    client.force_authenticate(UserFactory(username="evaluator", is_staff=True, is_superuser=True))
    return client


def make_dataset(api: APIClient, slug: str = "math", cases=None, prefix: str = "") -> dict:
    body = {"slug": slug, "cases": CASES if cases is None else cases}
    response = api.post(f"{prefix}/api/chat/datasets", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def run(api: APIClient, ref: str = "analyst", dataset: str = "math", prefix: str = "") -> dict:
    """Start a run over REST, then let this process's runner take it (what a worker does on its loop)."""
    started = api.post(f"{prefix}/api/chat/profiles/{ref}/evaluations", {"dataset": dataset}, format="json")
    assert started.status_code == 202, started.content
    async_to_sync(runner.execute)(started.json()["id"])
    return api.get(f"{prefix}/api/chat/evaluations/{started.json()['id']}").json()


# --------------------------------------------------------------------------- datasets


@pytest.mark.parametrize("prefix", ["", "/inventory"])
def test_datasets_are_created_read_changed_and_deleted_on_both_mounts(admin_api, prefix):
    made = make_dataset(admin_api, prefix=prefix)
    changed = admin_api.patch(f"{prefix}/api/chat/datasets/math", {"description": "sums"}, format="json").json()

    assert made["cases"] == CASES
    assert changed["description"] == "sums" and changed["cases"] == CASES
    assert [d["slug"] for d in admin_api.get(f"{prefix}/api/chat/datasets").json()] == ["math"]
    assert admin_api.delete(f"{prefix}/api/chat/datasets/math").status_code == 204
    assert admin_api.get(f"{prefix}/api/chat/datasets/math").status_code == 404


@pytest.mark.parametrize(
    ("cases", "field"),
    [
        ([{"input": ""}], "cases[0].input"),
        ([{"input": "x", "expect": {"regex": "("}}], "cases[0].expect.regex"),
        ([{"input": "x", "expect": {"json_schema": {"type": 3}}}], "cases[0].expect.json_schema"),
        ([{"input": "x"}, {"input": "y", "expect": {"startswith": "a"}}], "cases[1].expect.startswith"),
        ([{"input": "x", "judge": {"profile": "judge"}}], "cases[0].judge.criteria"),
        ([{"input": "x", "output": "y"}], "cases[0].output"),
    ],
)
def test_bad_cases_are_a_400_on_their_path(admin_api, cases, field):
    response = admin_api.post("/api/chat/datasets", {"slug": "bad", "cases": cases}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field


def test_json_lines_export_and_import_round_trip_and_a_bad_line_names_itself(admin_api):
    make_dataset(admin_api)
    exported = admin_api.get("/api/chat/datasets/math/export")
    make_dataset(admin_api, slug="copy", cases=[{"input": "first"}])

    imported = admin_api.generic(
        "POST", "/api/chat/datasets/copy/import", exported.content, content_type="application/x-ndjson"
    )
    bad = admin_api.generic(
        "POST",
        "/api/chat/datasets/copy/import",
        b'{"input": "ok"}\n{"input": ""}\n',
        content_type="application/x-ndjson",
    )

    assert exported["content-type"].startswith("application/x-ndjson")
    assert [json.loads(line) for line in exported.content.decode().splitlines()] == CASES
    assert imported.status_code == 200 and imported.json()["cases"] == [{"input": "first"}, *CASES]
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "line 2.input"
    assert len(admin_api.get("/api/chat/datasets/copy").json()["cases"]) == 4  # nothing half-applied


def test_cases_from_thumbs_down_turns_copy_their_prompts_with_answers_as_reference(admin_api, chat_api):
    conv = chat_api.post("/api/chat/conversations", {"profile": "analyst"}, format="json").json()["conv_id"]
    turns = [
        chat_api.post(f"/api/chat/conversations/{conv}/messages?wait=1", {"prompt": p}, format="json").json()
        for p in ("what is 1 + 1?", "what is 3 * 3?")
    ]
    chat_api.put(
        f"/api/chat/conversations/{conv}/turns/{turns[1]['turn_id']}/feedback", {"rating": "down"}, format="json"
    )
    make_dataset(admin_api, slug="regressions", cases=[])

    response = admin_api.post(
        "/api/chat/datasets/regressions/cases/from-turns",
        {"profile": "analyst", "feedback": "down", "limit": 10},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["cases"] == [{"input": "what is 3 * 3?", "reference": turns[1]["text"]}]


def test_only_staff_copy_peoples_turns_and_only_permitted_users_manage_datasets(chat_api):
    assert chat_api.post("/api/chat/datasets", {"slug": "x", "cases": CASES}, format="json").status_code == 403
    assert chat_api.get("/api/chat/datasets").status_code == 403


# --------------------------------------------------------------------------- runs


def test_a_run_scores_each_case_as_a_real_turn_keyed_by_the_versions_fingerprint(admin_api):
    make_dataset(admin_api)
    resolved = admin_api.post("/api/chat/profiles/analyst/resolve", {}, format="json").json()

    result = run(admin_api)

    assert result["status"] == "completed"
    assert result["fingerprint"] == resolved["fingerprint"] and result["version"] == 1
    assert (result["passed"], result["failed"], result["done"], result["total"]) == (2, 1, 3, 3)
    assert result["pass_rate"] == pytest.approx(2 / 3)
    first, _, third = result["cases"]
    assert first["passed"] and "42" in first["output"] and first["reasons"] == []
    assert first["latency_ms"] >= 0 and first["tokens"] > 0 and first["turn_id"]
    assert third["passed"] is False and third["reasons"] == ["is not equal to 'nope'"]


def test_a_runs_conversations_are_real_but_in_no_list(admin_api):
    make_dataset(admin_api)
    result = run(admin_api)

    hidden = Conversation.objects.filter(purpose="evaluation")
    assert hidden.count() == 3 and all(c.turns.get().status == "completed" for c in hidden)
    assert admin_api.get("/api/chat/conversations").json()["results"] == []
    assert {str(c.turns.get().pk) for c in hidden} == {case["turn_id"] for case in result["cases"]}


def test_json_schema_cases_check_the_output(admin_api):
    cases = [{"input": "hello", "expect": {"json_schema": {"type": "object"}}}]
    make_dataset(admin_api, slug="shape", cases=cases)
    result = run(admin_api, dataset="shape")
    assert result["cases"][0]["reasons"] == ["is not JSON"]


def test_a_run_that_was_stopped_midway_resumes_only_its_pending_cases(admin_api):
    make_dataset(admin_api)
    started = admin_api.post("/api/chat/profiles/analyst/evaluations", {"dataset": "math"}, format="json").json()
    done = {"input": CASES[0]["input"], "output": "kept", "passed": True, "reasons": [], "latency_ms": 1}
    EvaluationRun.objects.filter(pk=started["id"]).update(
        status="running", worker="a-worker-that-died", lease_until_ms=1, results=[done, None, None], done=1, passed=1
    )

    progress = admin_api.get(f"/api/chat/evaluations/{started['id']}").json()
    async_to_sync(runner.execute)(started["id"])
    result = admin_api.get(f"/api/chat/evaluations/{started['id']}").json()

    assert (progress["status"], progress["done"], progress["total"]) == ("running", 1, 3)
    assert progress["cases"][1] == {"input": CASES[1]["input"], "pending": True}
    assert result["status"] == "completed" and result["cases"][0]["output"] == "kept"
    assert Conversation.objects.filter(purpose="evaluation").count() == 2  # only the pending cases ran


def test_a_run_held_by_a_live_worker_is_not_taken(admin_api):
    from profiles.timestamps import now_ms

    make_dataset(admin_api)
    started = admin_api.post("/api/chat/profiles/analyst/evaluations", {"dataset": "math"}, format="json").json()
    EvaluationRun.objects.filter(pk=started["id"]).update(
        status="running", worker="alive", lease_until_ms=now_ms() + 60_000
    )

    async_to_sync(runner.execute)(started["id"])

    assert EvaluationRun.objects.get(pk=started["id"]).done == 0


def test_cases_run_at_most_chat_eval_concurrency_at_once(admin_api, settings):
    settings.CHAT_EVAL_CONCURRENCY = 1
    runner._slots = None
    make_dataset(admin_api, cases=[{"input": f"what is {n} + 1?"} for n in range(4)])
    try:
        result = run(admin_api)
    finally:
        runner._slots = None
    spans = sorted(
        (c.turns.get().started_at_ms, c.turns.get().finished_at_ms)
        for c in Conversation.objects.filter(purpose="evaluation")
    )
    assert result["done"] == 4
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(spans))


def test_the_judge_profile_grades_against_a_local_fake_provider(admin_api, settings):
    from .fake_openai import FakeOpenAIServer, remote_profile

    settings.OPENAI_API_KEY = settings.OPENAI_BASE_URL = ""
    with FakeOpenAIServer() as fake:
        remote_profile(fake, slug="judge")
        fake.stream_text(['Verdict: {"pass": false, "reason": "no units"}'])
        fake.stream_text(['{"pass": true, "reason": "fine"}'])
        cases = [
            {"input": "what is 6 * 7?", "judge": {"profile": "judge", "criteria": "says the units"}},
            {"input": "what is 1 + 1?", "judge": {"profile": "judge", "criteria": "is correct"}},
        ]
        make_dataset(admin_api, slug="judged", cases=cases)
        settings.CHAT_EVAL_CONCURRENCY = 1
        runner._slots = None
        try:
            result = run(admin_api, dataset="judged")
        finally:
            runner._slots = None

    first, second = result["cases"]
    assert first["passed"] is False and first["reasons"] == ["the judge failed it: no units"]
    assert second["passed"] is True
    asked = fake.requests[0].body["messages"][-1]["content"]
    assert "says the units" in asked and "what is 6 * 7?" in asked and "42" in asked


def test_compare_puts_the_cases_whose_outcome_changed_first(seeded_registries, admin_api):
    make_dataset(admin_api, cases=[{"input": "hello", "expect": {"contains": "careful helper"}}, *CASES[:1]])
    profile_services.profile_create(
        registry_slug="default",
        slug="helper",
        display_name="Helper",
        runtime={"system_prompt": "Be kind.", "tools": ["calculator"]},
    )
    a = run(admin_api, ref="helper")
    profile_services.profile_update(
        registry_slug="default",
        slug="helper",
        changes={"runtime": {"system_prompt": "You are a careful helper.", "tools": ["calculator"]}},
    )
    b = run(admin_api, ref="helper")

    compared = admin_api.get(f"/api/chat/evaluations/compare?a={a['id']}&b={b['id']}").json()

    assert a["version"] == 1 and b["version"] == 2 and a["fingerprint"] != b["fingerprint"]
    assert [row["changed"] for row in compared["cases"]] == [True, False]
    assert compared["cases"][0]["input"] == "hello"
    assert compared["cases"][0]["a"]["passed"] is False and compared["cases"][0]["b"]["passed"] is True
    assert (compared["a"]["id"], compared["b"]["id"]) == (a["id"], b["id"])


# --------------------------------------------------------------------------- the gate


@pytest.fixture
def gated(seeded_registries, admin_api) -> None:
    """`helper` v1 and v2 (v2 is a careful helper), `production` on v1, gated by `concise` at 100%."""
    profile_services.profile_create(
        registry_slug="default", slug="helper", display_name="Helper", runtime={"system_prompt": "Be kind."}
    )
    profile_services.profile_update(
        registry_slug="default", slug="helper", changes={"runtime": {"system_prompt": "You are a careful helper."}}
    )
    assert (
        admin_api.put("/api/chat/profiles/helper/labels/production", {"version": 1}, format="json").status_code == 200
    )
    make_dataset(admin_api, slug="concise", cases=[{"input": "hello", "expect": {"contains": "careful helper"}}])
    gate = admin_api.put(
        "/api/chat/profiles/helper/labels/production/gate", {"dataset": "concise", "min_pass_rate": 1}, format="json"
    )
    assert gate.status_code == 200, gate.content


@pytest.mark.usefixtures("gated")
def test_a_gated_label_refuses_a_version_without_a_good_run_then_accepts_it(admin_api):
    refused = admin_api.put("/api/chat/profiles/helper/labels/production", {"version": 2}, format="json")
    run(admin_api, ref="helper@2", dataset="concise")
    accepted = admin_api.put("/api/chat/profiles/helper/labels/production", {"version": 2}, format="json")

    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "evaluation_required" and error["dataset"] == "concise" and error["best_run"] is None
    assert accepted.status_code == 200 and accepted.json()["version"] == 2


@pytest.mark.usefixtures("gated")
def test_a_run_below_the_rate_is_named_and_the_move_still_refused(admin_api):
    admin_api.put(
        "/api/chat/profiles/helper/labels/production/gate", {"dataset": "concise", "min_pass_rate": 1}, format="json"
    )
    admin_api.patch(
        "/api/chat/datasets/concise", {"cases": [{"input": "hello", "expect": {"contains": "nope"}}]}, format="json"
    )
    low = run(admin_api, ref="helper@2", dataset="concise")

    refused = admin_api.put("/api/chat/profiles/helper/labels/production", {"version": 2}, format="json")

    assert low["pass_rate"] == 0
    assert refused.status_code == 409
    assert refused.json()["error"]["best_run"] == {"id": low["id"], "pass_rate": 0.0}
    assert f"its best run, {low['id']}, passed 0%" in refused.json()["error"]["message"]


@pytest.mark.usefixtures("gated")
def test_a_rollout_to_an_unevaluated_version_is_refused(admin_api):
    body = {"arms": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]}
    refused = admin_api.put("/api/chat/profiles/helper/labels/production/rollout", body, format="json")
    run(admin_api, ref="helper@2", dataset="concise")
    accepted = admin_api.put("/api/chat/profiles/helper/labels/production/rollout", body, format="json")

    assert refused.status_code == 409 and refused.json()["error"]["code"] == "evaluation_required"
    assert accepted.status_code == 200, accepted.content


@pytest.mark.usefixtures("gated")
def test_the_gate_is_read_and_removed(admin_api):
    gate = admin_api.get("/api/chat/profiles/helper/labels/production/gate").json()
    assert (gate["dataset"], gate["min_pass_rate"]) == ("concise", 1.0)
    assert admin_api.delete("/api/chat/profiles/helper/labels/production/gate").status_code == 204
    assert (
        admin_api.put("/api/chat/profiles/helper/labels/production", {"version": 2}, format="json").status_code == 200
    )
    assert admin_api.delete("/api/chat/datasets/concise").status_code == 204


# --------------------------------------------------------------------------- the admin


def test_the_admin_adds_a_dataset_through_the_service_and_compares_two_runs_side_by_side(admin_api, client):
    from profiles.models import AuditEvent

    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    added = client.post("/admin/chat/dataset/add/", {"slug": "math", "description": "", "cases": json.dumps(CASES)})
    bad = client.post("/admin/chat/dataset/add/", {"slug": "bad", "description": "", "cases": '[{"input": ""}]'})
    first, second = run(admin_api), run(admin_api)

    page = client.post(
        "/admin/chat/evaluationrun/", {"action": "compare", "_selected_action": [first["id"], second["id"]]}
    ).content.decode()
    listing = client.get("/admin/chat/evaluationrun/").content.decode()

    assert added.status_code == 302 and AuditEvent.objects.filter(action="dataset.created", slug="math").exists()
    assert bad.status_code == 200 and "cases[0].input" in bad.content.decode()
    assert f"Run {first['id']}: analyst@1 (2 passed)" in page and "what is 6 * 7?" in page
    assert "3/3" in listing and "67% (2 passed, 1 failed)" in listing


@pytest.mark.usefixtures("seeded_inventory")
def test_a_run_through_the_inventory_mount_measures_its_registrys_profile(admin_api):
    make_dataset(admin_api, prefix="/inventory", cases=[{"input": "hello", "expect": {"contains": "offline"}}])
    result = run(admin_api, ref="inventory", prefix="/inventory")

    assert (result["registry"], result["profile"], result["status"], result["passed"]) == (
        "inventory",
        "inventory",
        "completed",
        1,
    )
    assert Conversation.objects.get(purpose="evaluation").mount == "inventory"


# --------------------------------------------------------------------------- hostile and private


def test_a_case_that_cannot_be_scored_fails_alone_and_the_run_ends(admin_api):
    from chat.models import Dataset

    make_dataset(admin_api)
    poisoned = [*CASES[:1], {"input": "hello", "expect": {"regex": "("}}]
    Dataset.objects.filter(slug="math").update(cases=poisoned)  # stored by hand, never validated

    result = run(admin_api)

    assert result["status"] == "completed" and (result["passed"], result["failed"]) == (1, 1)
    assert result["cases"][1]["reasons"][0].startswith("could not be scored: ")


def test_runs_and_gates_of_a_profile_the_caller_may_not_use_are_not_found(admin_api):
    make_dataset(admin_api)
    profile_services.profile_create(
        registry_slug="default", slug="private", display_name="Private", visible_to_groups=["finance"]
    )
    secret = run(admin_api, ref="private")
    viewer = APIClient()
    viewer.force_authenticate(UserFactory(username="viewer", perms=["chat.view_evaluationrun", "chat.view_dataset"]))

    assert viewer.get(f"/api/chat/evaluations/{secret['id']}").status_code == 404
    assert viewer.get("/api/chat/profiles/private/evaluations").status_code == 404
    assert viewer.get(f"/api/chat/evaluations/compare?a={secret['id']}&b={secret['id']}").status_code == 404
    assert viewer.get("/api/chat/profiles/private/labels/production/gate").status_code == 404
    assert viewer.get("/api/chat/evaluations/compare?a=x&b=1").json()["error"]["field"] == "a"


def test_compare_keeps_cases_that_share_an_input(admin_api):
    make_dataset(
        admin_api,
        cases=[{"input": "hello", "expect": {"contains": "hello"}}, {"input": "hello", "expect": {"contains": "nope"}}],
    )
    a, b = run(admin_api), run(admin_api)

    rows = admin_api.get(f"/api/chat/evaluations/compare?a={a['id']}&b={b['id']}").json()["cases"]

    assert [(r["a"]["passed"], r["b"]["passed"]) for r in rows] == [(True, True), (False, False)]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"input": NaN}\n', "application/x-ndjson", 400),
        (b'{"input": "a", "input": "b"}\n', "application/x-ndjson", 400),
        (b"[" * 100_000 + b"]" * 100_000 + b"\n", "application/x-ndjson", 400),
        (b'{"input": "a"}', "application/json", 415),
    ],
)
def test_hostile_json_lines_are_refused_and_add_nothing(admin_api, body, content_type, status):
    make_dataset(admin_api, cases=[])
    response = admin_api.generic("POST", "/api/chat/datasets/math/import", body, content_type=content_type)
    assert response.status_code == status, response.content
    assert admin_api.get("/api/chat/datasets/math").json()["cases"] == []


def test_a_dataset_name_with_a_lone_surrogate_is_a_400(admin_api):
    body = b'{"dataset": "\\ud800"}'
    response = admin_api.generic(
        "POST", "/api/chat/profiles/analyst/evaluations", body, content_type="application/json"
    )
    assert response.status_code == 400 and response.json()["error"]["field"] == "dataset"


def test_an_evaluations_turns_are_not_in_the_versions_stats(admin_api, chat_api):
    make_dataset(admin_api)
    run(admin_api)
    conv = chat_api.post("/api/chat/conversations", {"profile": "analyst"}, format="json").json()["conv_id"]
    chat_api.post(f"/api/chat/conversations/{conv}/messages?wait=1", {"prompt": "hi"}, format="json")

    stats = admin_api.get("/api/chat/profiles/analyst/stats").json()

    assert [row["turns"] for row in stats] == [1], stats


@pytest.mark.usefixtures("gated")
def test_an_approved_request_to_an_unevaluated_version_is_refused_until_a_run_passes(admin_api):
    from django.contrib.auth.models import Group

    approver = UserFactory(username="approver")
    approver.groups.add(Group.objects.get_or_create(name="release")[0])
    releaser = APIClient()
    releaser.force_authenticate(approver)
    patched = admin_api.patch(
        "/api/chat/registries/default", {"required_approvals": 1, "approver_groups": ["release"]}, format="json"
    )
    assert patched.status_code == 200, patched.content
    request = admin_api.post("/api/chat/profiles/helper/labels/production/requests", {"version": 2}, format="json")
    assert request.status_code == 201, request.content
    approve = f"/api/chat/profiles/helper/labels/production/requests/{request.json()['id']}/approve"

    refused = releaser.post(approve)
    run(admin_api, ref="helper@2", dataset="concise")
    accepted = releaser.post(approve)

    assert refused.status_code == 409 and refused.json()["error"]["code"] == "evaluation_required"
    assert accepted.status_code == 200 and accepted.json()["status"] == "applied"
