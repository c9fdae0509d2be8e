from __future__ import annotations

import copy
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from drippulse.synthetic import lead_event
from processors import ids
from processors.compiler import compile_workflow
from processors.events import EVENT_TYPE_BY_SYMBOL, EventType
from processors.execution import ExecutionStatus
from processors.model import WorkflowDefinition
from processors.routing import RoutingState
from processors.templates import ACCOUNT_EXECUTIVES, EMEA_TEAM, LEAD_QUALIFICATION, NURTURE_QUEUE

WORKFLOW = compile_workflow("wf_lq", 3, WorkflowDefinition.model_validate(LEAD_QUALIFICATION))


def event(**lead: Any) -> dict[str, Any]:
    base = {
        "lead_id": "lead-1",
        "email": "ada@acme.io",
        "title": None,
        "country": "US",
        "industry": None,
        "employees": None,
        "lead_source": None,
        "attributes": {},
    }
    return {
        "event_id": "evt-1",
        "org_id": "org-1",
        "event_type": EventType.LEAD_CREATED,
        "occurred_at_ms": 1_700_000_000_000,
        "lead": {**base, **lead},
    }


def test_hot_lead_scores_tiers_routes_and_plans_actions() -> None:
    execution = WORKFLOW.evaluate(
        event(title="VP Sales", employees=500, industry="software", lead_source="demo_request"), RoutingState()
    )
    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.score == 90
    assert execution.score_breakdown == {
        "senior_title": 30,
        "mid_market": 20,
        "target_industry": 15,
        "demo_request": 25,
    }
    assert execution.tier == "A"
    assert execution.owner == ACCOUNT_EXECUTIVES[0]
    assert "round-robin" in execution.routing_reason
    assert execution.actions == ["crm_update", "webhook_notify"]
    assert execution.crm_commands[0].properties["drippulse_tier"] == "A"
    assert execution.crm_commands[0].email == "ada@acme.io"
    assert execution.notifications[0].payload["data"]["owner"] == ACCOUNT_EXECUTIVES[0]
    assert execution.execution_id == ids.execution_id("evt-1", "wf_lq", 3)
    assert execution.decisions == ["0:filter:pass", "2:tier:A", "3:route:default"]


def test_negative_points_and_territory_rules() -> None:
    cold = WORKFLOW.evaluate(event(email="x@gmail.com", title="Intern"), RoutingState())
    assert (cold.score, cold.tier, cold.owner) == (-20, "C", NURTURE_QUEUE)
    assert "territory rule 'nurture'" in cold.routing_reason
    emea = WORKFLOW.evaluate(event(country="DE", title="Director", employees=300), RoutingState())
    assert emea.tier == "B" and emea.owner in EMEA_TEAM


def test_filter_stops_the_workflow_and_says_why() -> None:
    execution = WORKFLOW.evaluate(event(email="someone@example.com", title="VP"), RoutingState())
    assert execution.status is ExecutionStatus.FILTERED_OUT
    assert "lead.email" in execution.status_reason
    assert execution.actions == [] and execution.tier == "" and execution.owner == ""


def test_trigger_matches_event_types() -> None:
    assert WORKFLOW.triggers(event())
    assert not WORKFLOW.triggers({**event(), "event_type": EventType.CRM_DEAL_UPDATED})


def test_trigger_condition_narrows_enrollment() -> None:
    definition = copy.deepcopy(LEAD_QUALIFICATION)
    definition["trigger"]["condition"] = {"field": "lead.country", "op": "eq", "value": "DE"}
    workflow = compile_workflow("wf", 1, WorkflowDefinition.model_validate(definition))
    assert workflow.triggers(event(country="DE"))
    assert not workflow.triggers(event(country="US"))


def test_ids_are_deterministic_and_distinct() -> None:
    assert ids.execution_id("e", "w", 1) == ids.execution_id("e", "w", 1)
    assert len({ids.execution_id("e", "w", 1), ids.execution_id("e", "w", 2), ids.execution_id("e2", "w", 1)}) == 3
    execution_id = ids.execution_id("e", "w", 1)
    assert ids.crm_command_id(execution_id, "4") != ids.webhook_message_id(execution_id, "4")


def _as_engine_event(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "event_type": EVENT_TYPE_BY_SYMBOL[record["event_type"]]}


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), count=st.integers(1, 40))
def test_evaluation_is_deterministic_given_the_same_state(seed: int, count: int) -> None:
    rng = random.Random(seed)
    events = [_as_engine_event(lead_event(rng, "org-1", n, occurred_at_ms=1)) for n in range(count)]

    def run() -> list[tuple[Any, ...]]:
        state = RoutingState()
        return [
            (e.execution_id, e.status, e.score, e.tier, e.owner, e.routing_reason, tuple(e.actions))
            for e in (WORKFLOW.evaluate(ev, state) for ev in events)
        ]

    assert run() == run()


@settings(max_examples=200, deadline=None)
@given(
    lead=st.fixed_dictionaries(
        {},
        optional={
            "lead_id": st.text(max_size=5),
            "email": st.one_of(st.none(), st.text(max_size=20)),
            "title": st.one_of(st.none(), st.text(max_size=10)),
            "country": st.one_of(st.none(), st.text(max_size=3)),
            "employees": st.one_of(st.none(), st.integers(), st.text(max_size=3)),
            "industry": st.one_of(st.none(), st.integers(), st.text(max_size=8)),
            "lead_source": st.one_of(st.none(), st.booleans(), st.text(max_size=8)),
        },
    )
)
def test_no_lead_makes_evaluation_raise(lead: dict[str, Any]) -> None:
    ev = {"event_id": "e", "org_id": "o", "event_type": EventType.LEAD_UPDATED, "occurred_at_ms": 1, "lead": lead}
    execution = WORKFLOW.evaluate(ev, RoutingState())
    assert execution.status in (ExecutionStatus.COMPLETED, ExecutionStatus.FILTERED_OUT)
