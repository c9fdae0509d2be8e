"""Remembered lead values stand in for `previous` when a producer sends only current values."""

from __future__ import annotations

from typing import Any

from processors.compiler import compile_workflow
from processors.events import EventType
from processors.lead_memory import REPLAYABLE_EVENTS, LeadMemory, RememberedLead, watched_fields
from processors.model import WorkflowDefinition
from processors.replay import compare_versions

WATCHED = frozenset({"lead.country"})


def _event(n: int, country: str | None, kind: EventType = EventType.LEAD_UPDATED, **extra: Any) -> dict[str, Any]:
    lead: dict[str, Any] = {"lead_id": "L1"}
    if country is not None:
        lead["country"] = country
    return {"event_id": f"e{n}", "org_id": "o1", "event_type": kind.value, "occurred_at_ms": n, "lead": lead, **extra}


def _seen(memory: LeadMemory, event: dict[str, Any]) -> dict[str, str] | None:
    """What the engine would see as `previous` for this event, and then remembers it."""
    memory.recall(event, "L1", WATCHED)
    previous = event.get("previous")
    memory.remember(event, "L1", WATCHED)
    return previous


def test_watched_fields_are_found_in_triggers_nested_branches_scores_and_not_groups() -> None:
    definition = WorkflowDefinition.model_validate(
        {
            "trigger": {
                "event_types": ["lead.updated"],
                "condition": {"not": {"field": "lead.title", "op": "changed"}},
            },
            "steps": [
                {
                    "type": "score",
                    "rules": [{"id": "r", "when": {"field": "lead.employees", "op": "changed"}, "points": 1}],
                },
                {
                    "type": "branch",
                    "arms": [
                        {
                            "when": {"field": "lead.industry", "op": "eq", "value": "x"},
                            "steps": [
                                {
                                    "type": "filter",
                                    "condition": {
                                        "any": [{"field": "lead.country", "op": "changed_from", "value": "CA"}]
                                    },
                                }
                            ],
                        }
                    ],
                    "otherwise": [
                        {"type": "filter", "condition": {"field": "lead.email", "op": "changed_to", "value": "a@b.co"}}
                    ],
                },
            ],
        }
    )
    assert watched_fields(definition) == {"lead.title", "lead.employees", "lead.country", "lead.email"}


def test_a_lead_seen_before_gets_its_last_values_as_previous() -> None:
    memory = LeadMemory()
    assert _seen(memory, _event(1, "CA", EventType.LEAD_CREATED)) is None, "a created lead has no before"
    assert _seen(memory, _event(2, "CA")) == {"lead.country": "CA"}
    assert _seen(memory, _event(3, "US")) == {"lead.country": "CA"}
    assert _seen(memory, _event(4, None)) == {"lead.country": "US"}, "a partial update keeps the remembered value"
    assert _seen(memory, _event(5, "DE")) == {"lead.country": "US"}
    assert memory.changed == {("o1", "L1")}


def test_what_the_producer_carries_wins_and_unknown_leads_get_nothing() -> None:
    memory = LeadMemory()
    assert _seen(memory, _event(1, "CA")) is None
    carried = _event(2, "US", previous={"lead.country": "FR"})
    assert _seen(memory, carried) == {"lead.country": "FR"}
    other = _event(3, "US")
    other["lead"]["lead_id"] = "L2"
    memory.recall(other, "L2", WATCHED)
    assert "previous" not in other


def test_a_replayed_event_finds_what_it_found_the_first_time() -> None:
    memory = LeadMemory()
    for n, country in enumerate(["CA", "US", "DE"]):
        _seen(memory, _event(n, country))
    restored = LeadMemory({("o1", "L1"): RememberedLead.from_json(memory.leads[("o1", "L1")].as_json())})
    assert _seen(restored, _event(1, "US")) == {"lead.country": "CA"}
    assert _seen(restored, _event(2, "DE")) == {"lead.country": "US"}
    assert restored.leads[("o1", "L1")].values == {"lead.country": "DE"}, "a replay does not rewind the memory"


def test_only_the_latest_events_are_kept_for_replays() -> None:
    memory = LeadMemory()
    for n in range(REPLAYABLE_EVENTS + 5):
        _seen(memory, _event(n, f"C{n % 10}"))
    assert len(memory.leads[("o1", "L1")].found_by_event) == REPLAYABLE_EVENTS


def test_replay_remembers_values_along_the_window() -> None:
    definition = {
        "trigger": {"event_types": ["lead.updated"]},
        "steps": [{"type": "tier", "thresholds": [{"tier": "A", "min_score": 0}], "default_tier": "B"}],
    }
    watching = {
        **definition,
        "steps": [{"type": "filter", "condition": {"field": "lead.country", "op": "changed_to", "value": "US"}}]
        + definition["steps"],
    }
    base = compile_workflow("wf", 1, WorkflowDefinition.model_validate(definition))
    candidate = compile_workflow("wf", 2, WorkflowDefinition.model_validate(watching))
    history = [_event(1, "CA"), _event(2, "US"), _event(3, "US")]
    report = compare_versions(base, candidate, history, examples=5).as_dict()
    assert report["changes"]["tier"] == 1
    filtered = [e["event_id"] for e in report["examples"]["tier"]]
    assert filtered == ["e1", "e3"], "e2 moved CA -> US by the remembered value; e1 and e3 changed nothing"
    assert report["examples"]["tier"][0]["after"] == ""
