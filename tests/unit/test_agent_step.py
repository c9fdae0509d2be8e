"""The `agent` step: a workflow calls a deployed agent with its lead and goes on at once. The engine
only plans the call (no I/O); what it plans is deterministic, never changes the workflow's own
decision, and an agent's policy can never hold one."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from api.dry_run import planned
from processors import ids
from processors.agent_inputs import as_sent, input_problems, input_validator
from processors.agent_templates import AgentTemplateDefinition
from processors.compiler import compile_workflow
from processors.execution import Execution
from processors.model import AgentStep, WorkflowDefinition, agent_steps
from processors.routing import RoutingState
from processors.step_types import step_models
from processors.templates import LEAD_INPUT_SCHEMA, lead_qualification_agent
from tests.unit.test_conditions import events
from tests.unit.test_workflow_properties import definition_of, steps

AGENT = "agt_5f0c2a9d81e4b7c36a10"
CALL = {"type": "agent", "agent_id": AGENT}
TAG = {"type": "action", "action": "add_tag", "tag": "called"}
SCORE = {
    "type": "score",
    "rules": [{"id": "vp", "when": {"field": "lead.title", "op": "eq", "value": "VP"}, "points": 5}],
}


def _run(workflow_steps: list[dict[str, Any]], event: dict[str, Any], trace: bool = False) -> Execution:
    definition = WorkflowDefinition.model_validate(
        {"trigger": {"event_types": ["lead.created", "crm.deal.updated"]}, "steps": workflow_steps}
    )
    return compile_workflow("wf_caller", 2, definition).evaluate(event, RoutingState(), trace)


def _lead_event(event_id: str = "e1", **lead: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "org_id": "org_1",
        "event_type": "lead.created",
        "occurred_at_ms": 1_700_000_000_000,
        "lead": {"lead_id": "l-1", "email": "ada@initech.net", "title": "VP", **lead},
    }


def test_an_agent_step_plans_a_call_with_the_lead_and_the_workflow_goes_on() -> None:
    execution = _run([SCORE, CALL, TAG], _lead_event())
    (call,) = execution.agent_calls
    assert (call.step, call.agent_id, call.event_type) == ("1", AGENT, "lead.updated")
    assert call.lead == _lead_event()["lead"], "the agent gets the lead as the workflow's event carries it"
    assert execution.actions == ["agent_call", "add_tag"], "fire and forget: the steps after it run at once"
    assert execution.status.value == "completed" and execution.score == 5


def test_a_call_is_named_after_the_execution_and_the_step_so_a_replay_sends_the_same_event() -> None:
    always = {"field": "lead.lead_id", "op": "exists"}
    graph = [CALL, {"type": "branch", "arms": [{"when": always, "steps": [CALL]}]}]
    first, again = _run(graph, _lead_event()), _run(graph, _lead_event())
    assert [c.event_id for c in first.agent_calls] == [c.event_id for c in again.agent_calls]
    assert [c.event_id for c in first.agent_calls] == [
        ids.agent_call_event_id(first.execution_id, "0"),
        ids.agent_call_event_id(first.execution_id, "1.0.0"),
    ]
    other = _run([CALL], _lead_event("e2"))
    assert other.agent_calls[0].event_id != first.agent_calls[0].event_id, "another event is another call"
    assert all(len(c.event_id) <= 128 for c in first.agent_calls), "an event id's limit"


def test_an_event_without_a_lead_calls_no_agent_and_says_why() -> None:
    crm_event = {
        "event_id": "e1",
        "org_id": "org_1",
        "event_type": "crm.deal.updated",
        "occurred_at_ms": 1,
        "lead": None,
        "crm_object": {"object_type": "deal", "object_id": "d-1", "lead_id": "l-1", "properties": {}},
    }
    execution = _run([CALL, TAG], crm_event, trace=True)
    assert execution.agent_calls == [] and execution.actions == ["add_tag"]
    assert execution.trace is not None
    assert execution.trace[0] == {
        "step": "0",
        "type": "agent",
        "agent_id": AGENT,
        "event_type": "lead.updated",
        "called": False,
        "reason": "the event carries no lead to call the agent with",
    }


def test_a_dry_run_shows_the_calls_it_would_make() -> None:
    execution = _run([CALL], _lead_event(), trace=True)
    (shown,) = planned(execution).agent_calls
    assert shown.model_dump() == {
        "step": "0",
        "agent_id": AGENT,
        "event_type": "lead.updated",
        "event_id": ids.agent_call_event_id(execution.execution_id, "0"),
    }


def test_agent_steps_are_found_with_the_path_of_their_agent_id_wherever_they_sit() -> None:
    definition = WorkflowDefinition.model_validate(
        {
            "trigger": {"event_types": ["lead.created"]},
            "steps": [
                CALL,
                {
                    "type": "branch",
                    "arms": [{"when": {"field": "score", "op": "gt", "value": 1}, "steps": [TAG, CALL]}],
                    "otherwise": [CALL],
                },
                {"type": "approval", "on_reject": [CALL], "on_timeout": "branch", "timeout_branch": [CALL]},
            ],
        }
    )
    assert [path for path, _ in agent_steps(definition.steps)] == [
        "$.steps[0].agent_id",
        "$.steps[1].arms[0].steps[1].agent_id",
        "$.steps[1].otherwise[0].agent_id",
        "$.steps[2].on_reject[0].agent_id",
        "$.steps[2].timeout_branch[0].agent_id",
    ]
    assert compile_workflow("wf", 1, definition).calls_agents
    assert not compile_workflow("wf", 1, definition_of([TAG])).calls_agents


@pytest.mark.parametrize("agent_id", ["", "wf_123", "agt_", "agt_ABC", "agt_12/../x", "agt_" + "a" * 61])
def test_an_agent_step_names_an_agent_id_as_the_control_plane_issues_them(agent_id: str) -> None:
    with pytest.raises(ValidationError, match="agent_id"):
        AgentStep.model_validate({"type": "agent", "agent_id": agent_id})


def test_an_agent_step_calls_with_a_lead_event_type_only() -> None:
    with pytest.raises(ValidationError, match="event_type"):
        AgentStep.model_validate({**CALL, "event_type": "lead.converted"})


def test_the_step_catalogue_lists_the_agent_step_with_a_valid_example() -> None:
    model, example = step_models()["agent"]
    assert model is AgentStep and AgentStep.model_validate(example).agent_id.startswith("agt_")


def test_an_agents_policy_cannot_call_an_agent_so_calls_never_loop() -> None:
    definition = lead_qualification_agent()
    branch = next(step for step in definition["policy"]["steps"] if step["type"] == "branch")
    branch["otherwise"] = [*branch.get("otherwise", []), CALL]
    with pytest.raises(ValidationError, match="an agent's policy cannot call an agent"):
        AgentTemplateDefinition.model_validate(definition)


_positions = st.integers(min_value=0, max_value=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workflow_steps=steps, body=events, position=_positions)
def test_an_agent_step_never_changes_the_workflows_own_decision(
    workflow_steps: list[dict[str, Any]], body: dict[str, Any], position: int
) -> None:
    """Wherever it sits, calling an agent adds its call and the `agent_call` action, and nothing else:
    the status, score, tier, owner, commands and notifications are those of the workflow without it."""
    without = [step for step in workflow_steps if step["type"] != "agent"]
    with_call = [*without[:position], CALL, *without[position:]]
    definition_with, definition_without = definition_of(with_call), definition_of(without)
    event = {**_lead_event(), **body, "event_id": "e1", "org_id": "org_1", "event_type": "lead.created"}
    event["lead"] = _lead_event()["lead"]
    called = compile_workflow("wf", 1, definition_with).evaluate(event, RoutingState())
    plain = compile_workflow("wf", 1, definition_without).evaluate(event, RoutingState())

    def decision(execution: Execution) -> tuple[Any, ...]:
        return (
            execution.status,
            execution.score,
            execution.score_breakdown,
            execution.tier,
            execution.owner,
            [a for a in execution.actions if a != "agent_call"],
            [(c.operation, c.properties) for c in execution.crm_commands],
            [(n.event_type, n.payload) for n in execution.notifications],
        )

    assert decision(called) == decision(plain)
    assert called.actions.count("agent_call") == len(called.agent_calls) <= 1


def test_a_lead_read_back_from_an_event_is_checked_as_the_caller_sent_it() -> None:
    """The event contract fills missing fields with null; the input schema must still read a missing
    email as missing, as `execute` does, not as a null of the wrong type."""
    event_lead = {"lead_id": "l-1", "email": None, "title": "VP", "country": None, "attributes": {}}
    assert as_sent(event_lead) == {"lead_id": "l-1", "title": "VP"}
    validator = input_validator(LEAD_INPUT_SCHEMA)
    assert input_problems(validator, as_sent(event_lead)) == {"$.lead.email": "'email' is a required property"}
    assert input_problems(validator, as_sent({**event_lead, "email": "ada@initech.net"})) == {}
