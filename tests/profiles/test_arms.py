"""The rollout rules without a database (`profiles.arms`): which arm a subject gets, and when a guard
halts a rollout. Serving and halting through real turns are in tests/chat/test_rollouts.py."""

from __future__ import annotations

import math

import pytest

from profiles.arms import RolloutSubject, guard_breach, parse_rollout, pick_arm
from profiles.errors import InvalidInput

ARMS = [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]


def test_the_same_subject_gets_the_same_arm_and_another_rollout_reshuffles():
    subjects = [RolloutSubject(user_id=n) for n in range(400)]

    first = [pick_arm(rollout_id=1, arms=ARMS, sticky="user", subject=s)["version"] for s in subjects]
    again = [pick_arm(rollout_id=1, arms=ARMS, sticky="user", subject=s)["version"] for s in subjects]
    other = [pick_arm(rollout_id=2, arms=ARMS, sticky="user", subject=s)["version"] for s in subjects]

    assert first == again
    assert first != other  # the hash includes the rollout: a new rollout is a new draw
    assert 140 <= first.count(2) <= 260


def test_a_kept_arm_stays_while_it_has_weight():
    subject = RolloutSubject(user_id=1, conversation_id="c", kept=(7, 2))
    drained = [{"version": 1, "weight": 100}, {"version": 2, "weight": 0}]

    assert pick_arm(rollout_id=7, arms=[{"version": 1, "weight": 99}, {"version": 2, "weight": 1}],
                    sticky="conversation", subject=subject)["version"] == 2  # fmt: skip
    assert pick_arm(rollout_id=7, arms=drained, sticky="conversation", subject=subject)["version"] == 1
    assert pick_arm(rollout_id=8, arms=drained, sticky="conversation", subject=subject)["version"] == 1


def test_a_zero_weight_arm_is_never_drawn_and_nobody_to_hash_gets_no_arm():
    arms = [{"version": 1, "weight": 0}, {"version": 2, "weight": 100}]

    drawn = {pick_arm(rollout_id=3, arms=arms, sticky="user", subject=RolloutSubject(user_id=n))["version"]
             for n in range(200)}  # fmt: skip

    assert drawn == {2}
    assert pick_arm(rollout_id=3, arms=arms, sticky="user", subject=RolloutSubject()) is None


def stats(**by_version: dict) -> dict[int, dict]:
    return {int(v[1:]): figures for v, figures in by_version.items()}


def test_an_arm_is_judged_only_after_min_turns_finished_turns():
    guard = {"max_failure_rate": 0.2, "min_turns": 5}
    four = stats(v2={"failed": 4})
    five = stats(v2={"failed": 4, "completed": 1})

    assert guard_breach(guard, ARMS, four) is None
    assert guard_breach(guard, ARMS, five) == "arm version 2: failure rate 0.80 > 0.2 after 5 turns"


def test_thumbs_down_are_counted_against_the_arms_finished_turns():
    guard = {"max_thumbs_down_rate": 0.25, "min_turns": 4}

    assert guard_breach(guard, ARMS, stats(v1={"completed": 4, "thumbs_down": 1})) is None
    assert guard_breach(guard, ARMS, stats(v1={"completed": 4, "thumbs_down": 2})) == (
        "arm version 1: thumbs-down rate 0.50 > 0.25 after 4 turns"
    )


def test_a_slow_arm_passes_the_latency_bound():
    guard = {"max_latency_ms_p95": 800, "min_turns": 1}

    assert guard_breach(guard, ARMS, stats(v2={"completed": 3, "latency_ms_p95": 800})) is None
    assert guard_breach(guard, ARMS, stats(v2={"completed": 3, "latency_ms_p95": 950})) == (
        "arm version 2: latency p95 950 ms > 800 ms after 3 turns"
    )
    assert guard_breach({}, ARMS, stats(v2={"failed": 100})) is None  # no guard: never halts


@pytest.mark.parametrize("bad", [math.nan, math.inf, True, "0.5"])
def test_a_rate_that_is_not_a_finite_number_is_refused(bad):
    with pytest.raises(InvalidInput) as raised:
        parse_rollout({"arms": ARMS, "guard": {"max_failure_rate": bad, "min_turns": 3}})

    assert raised.value.field == "guard.max_failure_rate"
