from __future__ import annotations

import random
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.compiler import compile_workflow
from processors.events import EventType
from processors.model import WorkflowDefinition
from processors.routing import Member, RoutingState, rotation


def assign(state: RoutingState, team: list[Member], lead: str, day: str = "2026-11-28") -> tuple[str | None, str]:
    return state.round_robin("o", "w", "pool", lead, team, rotation(team), day)


@settings(max_examples=100, deadline=None)
@given(weights=st.lists(st.integers(1, 5), min_size=1, max_size=6), leads=st.integers(1, 120))
def test_weighted_shares_stay_within_one_of_the_weighted_share(weights: list[int], leads: int) -> None:
    team = [Member(f"owner-{i}", weight) for i, weight in enumerate(weights)]
    state = RoutingState()
    owners = Counter(assign(state, team, f"lead-{n}")[0] for n in range(leads))
    cycle = sum(weights)
    for member in team:
        expected = leads * member.weight / cycle
        assert abs(owners.get(member.owner, 0) - expected) <= member.weight, (owners, weights)
    full_cycles = leads // cycle
    if leads % cycle == 0:
        assert all(owners[m.owner] == full_cycles * m.weight for m in team)


def test_smooth_rotation_interleaves() -> None:
    assert rotation([Member("a", 2), Member("b", 1)]) == (0, 1, 0)


def test_a_lead_keeps_its_recorded_owner_and_away_owners_are_skipped() -> None:
    team = [Member("a"), Member("b", away=True), Member("c")]
    state = RoutingState()
    first, _ = assign(state, team, "lead-1")
    second, reason = assign(state, team, "lead-2")
    assert (first, second) == ("a", "c") and "skipped b (away)" in reason
    again, reason = assign(state, team, "lead-1")
    assert again == "a" and "kept" in reason
    assert assign(RoutingState(), [Member("x", away=True)], "lead-9")[0] is None


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 1000), caps=st.lists(st.integers(1, 6), min_size=1, max_size=4))
def test_daily_caps_are_never_exceeded_and_overflow_moves_on(seed: int, caps: list[int]) -> None:
    rng = random.Random(seed)
    team = [Member(f"o{i}", rng.randint(1, 3), daily_cap=cap) for i, cap in enumerate(caps)]
    state = RoutingState()
    per_day: Counter[tuple[str | None, str]] = Counter()
    for n in range(60):
        day = rng.choice(["2026-11-27", "2026-11-28"])
        owner, _ = assign(state, team, f"lead-{n}", day)
        per_day[(owner, day)] += 1
    for member in team:
        for day in ("2026-11-27", "2026-11-28"):
            assert per_day[(member.owner, day)] <= member.daily_cap
    assert per_day[(None, "2026-11-28")] == 0 or all(per_day[(m.owner, "2026-11-28")] == m.daily_cap for m in team), (
        "overflow only once everyone is full"
    )


def _route_event(email: str, lead: str) -> dict[str, Any]:
    return {
        "event_id": lead,
        "org_id": "o",
        "event_type": EventType.LEAD_CREATED.value,
        "occurred_at_ms": 1,
        "lead": {"lead_id": lead, "email": email},
    }


def test_account_match_sends_a_domain_to_the_owner_holding_it() -> None:
    workflow = compile_workflow(
        "w",
        1,
        WorkflowDefinition.model_validate(
            {
                "trigger": {"event_types": ["lead.created"]},
                "steps": [{"type": "route", "account_match": True, "team": ["a", "b", "c"], "fallback_owner": "q"}],
            }
        ),
    )
    state = RoutingState()
    first = workflow.evaluate(_route_event("x@acme.io", "l1"), state)
    other = workflow.evaluate(_route_event("y@globex.com", "l2"), state)
    same = workflow.evaluate(_route_event("z@ACME.io", "l3"), state)
    personal = [workflow.evaluate(_route_event(f"p{n}@gmail.com", f"p{n}"), state).owner for n in range(2)]
    assert (first.owner, other.owner, same.owner) == ("a", "b", "a")
    assert same.routing_reason == "account match: acme.io is held by a"
    assert personal == ["c", "a"], "free-mail domains are never accounts"


def test_everyone_capped_goes_to_the_fallback_queue_with_the_reason() -> None:
    workflow = compile_workflow(
        "w",
        1,
        WorkflowDefinition.model_validate(
            {
                "trigger": {"event_types": ["lead.created"]},
                "steps": [{"type": "route", "team": [{"owner": "a", "daily_cap": 1}], "fallback_owner": "queue"}],
            }
        ),
    )
    state = RoutingState()
    assert workflow.evaluate(_route_event("a@x.io", "l1"), state).owner == "a"
    overflow = workflow.evaluate(_route_event("b@y.io", "l2"), state)
    assert overflow.owner == "queue" and "at daily cap 1" in overflow.routing_reason
