from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.routing import RoutingState


@settings(max_examples=100, deadline=None)
@given(team_size=st.integers(1, 7), leads=st.integers(1, 100))
def test_round_robin_shares_differ_by_at_most_one(team_size: int, leads: int) -> None:
    team = [f"owner-{i}" for i in range(team_size)]
    state = RoutingState()
    owners = Counter(state.round_robin("o", "w", "pool", f"lead-{n}", team)[0] for n in range(leads))
    counts = [owners.get(member, 0) for member in team]
    assert max(counts) - min(counts) <= 1


def test_a_lead_keeps_its_recorded_owner() -> None:
    state = RoutingState()
    team = ["a", "b", "c"]
    first, _ = state.round_robin("o", "w", "pool", "lead-1", team)
    state.round_robin("o", "w", "pool", "lead-2", team)
    again, reason = state.round_robin("o", "w", "pool", "lead-1", team)
    assert again == first and "kept" in reason
    assert state.pointers[("o", "w", "pool")] == 2


def test_recorded_owner_who_left_the_team_is_replaced() -> None:
    state = RoutingState(assignments={("o", "w", "lead-1"): "gone"})
    owner, _ = state.round_robin("o", "w", "pool", "lead-1", ["a", "b"])
    assert owner == "a"


def test_state_records_what_changed_for_saving() -> None:
    state = RoutingState(pointers={("o", "w", "pool"): 5})
    owner, reason = state.round_robin("o", "w", "pool", "lead-9", ["a", "b"])
    assert owner == "b" and "position 2 of 2" in reason
    assert state.changed_pointers == {("o", "w", "pool")}
    assert state.new_assignments == {("o", "w", "lead-9")}
