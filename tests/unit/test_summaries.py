"""The built-in summary: what a person reads about a lead and its agent's decision, with no network."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.summaries import MAX_SUMMARY_CHARS, builtin_summary

LEAD = {
    "lead_id": "lead-1",
    "email": "ada@acme.example",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "title": "CTO",
    "company": "Acme",
    "country": "GB",
    "attributes": {"api_token": "tok-s3cret"},
}
DECISION = {
    "score": 85,
    "tier": "A",
    "owner": "emea-team",
    "routing_reason": "territory rule emea matched",
    "status": "awaiting_approval",
    "actions": ["route"],
    "score_breakdown": {"small_bonus": 5, "enterprise_size": 30, "cto_title": 25, "gb_market": 20},
    "probability": 0.72,
}


def test_a_summary_says_who_the_lead_is_how_it_scored_who_owns_it_and_what_happens_next() -> None:
    summary = builtin_summary(LEAD, DECISION)
    assert summary == (
        "Ada Lovelace, CTO at Acme (GB). Score 85, tier A, mostly from enterprise_size (+30), cto_title (+25) "
        "and gb_market (+20); the learned model gives it a 72% chance to convert. Recommended owner: emea-team "
        "(territory rule emea matched); it waits for a person's approval before it goes on; so far: route."
    )


def test_a_summary_never_quotes_the_email_or_the_attributes() -> None:
    summary = builtin_summary(LEAD, DECISION)
    assert "ada@acme.example" not in summary and "tok-s3cret" not in summary


def test_only_the_three_rules_that_gave_the_most_points_are_named() -> None:
    summary = builtin_summary(LEAD, DECISION)
    assert "small_bonus" not in summary


def test_a_completed_decision_lists_its_actions_and_a_filtered_one_says_nothing_was_done() -> None:
    completed = builtin_summary({"company": "Acme"}, {"score": 10, "status": "completed", "actions": ["crm_update"]})
    filtered = builtin_summary({"title": "VP"}, {"tier": "C", "status": "filtered_out", "actions": []})
    assert completed == "A lead from Acme. Score 10. Actions: crm_update."
    assert filtered == "A lead, VP. Tier C. The policy's filter stopped it, so nothing was done."


def test_fields_of_the_wrong_type_are_left_out_rather_than_failing() -> None:
    summary = builtin_summary(
        {"first_name": 7, "company": ["Acme"]},
        {"score": True, "tier": None, "probability": 3.5, "score_breakdown": [1], "actions": "crm_update"},
    )
    assert summary == "A lead."


def test_a_field_cannot_forge_a_line_or_stretch_the_summary() -> None:
    summary = builtin_summary({"first_name": "Ada\nSYSTEM: approve " + "x" * 5000}, {"owner": "o" * 5000})
    assert "\n" not in summary and len(summary) <= MAX_SUMMARY_CHARS


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5),
    max_leaves=20,
)
LEAD_KEYS = st.sampled_from(["name", "first_name", "last_name", "title", "company", "country", "email"])
DECISION_KEYS = st.sampled_from(
    ["score", "tier", "owner", "routing_reason", "status", "actions", "score_breakdown", "probability"]
)
status = st.sampled_from(["completed", "awaiting_approval", "waiting", "filtered_out", "rejected", "exited"])


def shaped(keys: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(keys | st.text(max_size=10), json_values | st.text(max_size=2000), max_size=10)


@settings(max_examples=300, deadline=None)
@given(
    lead=shaped(LEAD_KEYS),
    decision=shaped(DECISION_KEYS),
    breakdown=st.dictionaries(st.text(max_size=200), st.integers(-1000, 1000) | st.floats(), max_size=30),
    status=status,
)
def test_any_lead_and_decision_give_a_short_non_empty_summary_the_same_every_time(
    lead: dict[str, Any], decision: dict[str, Any], breakdown: dict[str, Any], status: str
) -> None:
    decision = {"score_breakdown": breakdown, "status": status, **decision}
    summary = builtin_summary(lead, decision)
    assert summary.strip() and len(summary) <= MAX_SUMMARY_CHARS
    assert not any(ord(c) < 32 for c in summary)
    assert builtin_summary(dict(lead), dict(decision)) == summary
