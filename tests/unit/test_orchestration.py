"""Pausing and resuming executions: the engine's side of approvals, waits and exits."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from processors import ids
from processors.compiler import CompiledWorkflow, compile_workflow, epoch_ms
from processors.execution import PAUSED, Execution, ExecutionStatus
from processors.model import WorkflowDefinition
from processors.orchestration import Outcome, Resumption, Suspension, resume, suspend
from processors.routing import RoutingState
from tests.unit.test_conditions import events
from tests.unit.test_workflow_properties import definition_of, steps, steps_that_may_pause

HOUR_MS = 3_600_000
T0 = 1_700_000_000_000


def event(**lead: Any) -> dict[str, Any]:
    return {
        "event_id": "e1",
        "org_id": "o",
        "event_type": "lead.created",
        "occurred_at_ms": T0,
        "lead": {"lead_id": "l1", "email": "ada@acme.io", **lead},
    }


def compiled(steps_: list[dict[str, Any]], **extra: Any) -> CompiledWorkflow:
    definition = {"trigger": {"event_types": ["lead.created"]}, "steps": steps_, **extra}
    return compile_workflow("wf", 3, WorkflowDefinition.model_validate(definition))


TAG = {"type": "action", "action": "add_tag", "tag": "seen"}
UPDATE = {"type": "action", "action": "crm_update"}
NOTIFY = {"type": "action", "action": "webhook_notify"}


def paused(workflow: CompiledWorkflow, at_ms: int = T0, **lead: Any) -> tuple[Execution, Suspension]:
    execution = workflow.evaluate(event(**lead), RoutingState())
    assert execution.status in PAUSED
    return execution, Suspension.from_json(suspend(execution, at_ms).to_json())


def test_an_approval_stops_before_later_steps_and_asks_for_a_decision() -> None:
    workflow = compiled([TAG, {"type": "approval", "approvers": ["boss@acme.io"], "timeout_hours": 2}, UPDATE])
    execution, suspension = paused(workflow)
    assert execution.status is ExecutionStatus.AWAITING_APPROVAL
    assert execution.actions == ["add_tag"], "steps after the approval must not run yet"
    assert suspension.due_at_ms == T0 + 2 * HOUR_MS and suspension.approvers == ("boss@acme.io",)
    requested = [n for n in execution.notifications if n.event_type == "approval.requested"]
    assert requested[0].payload["data"]["approval_id"] == ids.approval_id(execution.execution_id, "1")
    assert [entry["what"] for entry in execution.timeline] == ["awaiting_approval"]


def test_approval_resumes_the_rest_with_the_ids_of_an_uninterrupted_run() -> None:
    with_approval = compiled([TAG, {"type": "approval"}, UPDATE, NOTIFY])
    _, suspension = paused(with_approval)
    done = resume(with_approval, suspension, Resumption(Outcome.APPROVED, T0 + 5, "boss@acme.io", "ok"), T0 + 9)
    assert done.status is ExecutionStatus.COMPLETED and done.actions == ["add_tag", "crm_update", "webhook_notify"]
    assert [c.step for c in done.crm_commands] == ["2"], "only the commands after the approval are new"
    assert [(e["what"], e["actor"], e["note"], e["actions"]) for e in done.timeline] == [
        ("awaiting_approval", "", done.timeline[0]["note"], []),
        ("approved", "boss@acme.io", "ok", []),
        ("resumed", "", "", ["crm_update", "webhook_notify"]),
    ]
    decided = [n for n in done.notifications if n.event_type == "approval.decided"]
    assert decided[0].payload["data"]["decision"] == "approved"


def test_rejection_runs_on_reject_and_ends_rejected() -> None:
    workflow = compiled(
        [{"type": "approval", "on_reject": [{"type": "action", "action": "add_tag", "tag": "no"}]}, UPDATE]
    )
    _, suspension = paused(workflow)
    done = resume(workflow, suspension, Resumption(Outcome.REJECTED, T0, "ann@acme.io", "spam"), T0)
    assert done.status is ExecutionStatus.REJECTED and "ann@acme.io" in done.status_reason
    assert [(c.step, c.operation) for c in done.crm_commands] == [("0.reject.0", "add_tag")]


@pytest.mark.parametrize(
    ("policy", "status", "operations"),
    [
        ({"on_timeout": "approve"}, ExecutionStatus.COMPLETED, ["update_lead"]),
        ({"on_timeout": "reject"}, ExecutionStatus.REJECTED, []),
        (
            {"on_timeout": "branch", "timeout_branch": [{"type": "action", "action": "create_task", "title": "Chase"}]},
            ExecutionStatus.COMPLETED,
            ["create_task"],
        ),
    ],
)
def test_a_timeout_takes_the_steps_policy(
    policy: dict[str, Any], status: ExecutionStatus, operations: list[str]
) -> None:
    workflow = compiled([{"type": "approval", **policy}, UPDATE])
    _, suspension = paused(workflow)
    done = resume(workflow, suspension, Resumption(Outcome.TIMED_OUT, suspension.due_at_ms), suspension.due_at_ms)
    assert done.status is status and [c.operation for c in done.crm_commands] == operations
    assert done.decisions[-1] == "0:approval:timed_out"


def test_waits_for_a_duration_a_moment_or_a_leads_date() -> None:
    assert paused(compiled([{"type": "wait", "hours": 24}, UPDATE]))[1].due_at_ms == T0 + 24 * HOUR_MS
    until = compiled([{"type": "wait", "until": "2030-01-01T09:00:00+01:00"}, UPDATE])
    assert paused(until)[1].due_at_ms == epoch_ms("2030-01-01T08:00:00Z")
    by_field = compiled([{"type": "wait", "until_field": "lead.attributes.demo", "offset_hours": -24}, UPDATE])
    assert paused(by_field, attributes={"demo": "2030-03-02"})[1].due_at_ms == epoch_ms("2030-03-01")
    no_date = by_field.evaluate(event(attributes={"demo": "soon"}), RoutingState())
    assert no_date.status is ExecutionStatus.COMPLETED and no_date.decisions == ["0:wait:skipped"]


def test_an_exit_ends_the_execution_without_running_anything() -> None:
    workflow = compiled(
        [{"type": "wait", "hours": 1}, UPDATE],
        exit_condition={"field": "lead.attributes.stage", "op": "eq", "value": "customer"},
    )
    assert workflow.exit_condition is not None
    assert workflow.exit_condition(event(attributes={"stage": "customer"}))
    _, suspension = paused(workflow)
    done = resume(workflow, suspension, Resumption(Outcome.EXITED, T0 + 1, note="event e2"), T0 + 2)
    assert done.status is ExecutionStatus.EXITED and not done.crm_commands and "e2" in done.status_reason


def test_a_pause_inside_a_branch_continues_after_the_branch() -> None:
    branch = {
        "type": "branch",
        "arms": [{"when": {"field": "lead.country", "op": "eq", "value": "DE"}, "steps": [{"type": "approval"}, TAG]}],
    }
    workflow = compiled([branch, UPDATE])
    _, suspension = paused(workflow, country="DE")
    assert suspension.step == "0.0.0"
    done = resume(workflow, suspension, Resumption(Outcome.APPROVED, T0, "a@acme.io"), T0)
    assert [c.step for c in done.crm_commands] == ["0.0.1", "1"]


def test_a_resume_can_pause_again_at_the_next_step() -> None:
    workflow = compiled([{"type": "wait", "hours": 1}, {"type": "approval"}, UPDATE])
    _, first = paused(workflow)
    again = resume(workflow, first, Resumption(Outcome.WAIT_ELAPSED, first.due_at_ms), first.due_at_ms)
    assert again.status is ExecutionStatus.AWAITING_APPROVAL and again.pause is not None
    second = suspend(again, first.due_at_ms)
    assert second.step == "1" and [e["what"] for e in again.timeline][-1] == "awaiting_approval"


def test_a_route_after_a_pause_is_refused() -> None:
    with pytest.raises(ValueError, match="route steps must come before"):
        compiled([{"type": "approval"}, {"type": "route", "fallback_owner": "queue"}])


NO_OP = {"type": "filter", "condition": {"field": "event_id", "op": "exists"}}
"""Stands in for a pause: it passes every event and keeps every later step's path."""


def _without_pauses(steps_: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kept = []
    for step in steps_:
        if step["type"] in ("approval", "wait"):
            step = NO_OP
        elif step["type"] == "branch":
            step = {
                **step,
                "arms": [{**arm, "steps": _without_pauses(arm["steps"])} for arm in step["arms"]],
                "otherwise": _without_pauses(step["otherwise"]),
            }
        kept.append(step)
    return kept


def _observable(execution: Execution) -> tuple[Any, ...]:
    return (
        execution.execution_id,
        execution.status,
        execution.score,
        execution.tier,
        execution.owner,
        execution.actions,
        execution.logs,
        [
            (ids.crm_command_id(execution.execution_id, c.step), c.operation, c.properties)
            for c in execution.crm_commands
        ],
        [(n.step, n.payload) for n in execution.notifications if not n.event_type.startswith("approval.")],
        [(c.step, c.agent_id, c.event_type, c.event_id) for c in execution.agent_calls],
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(workflow_steps=steps_that_may_pause, body=events)
def test_approving_every_pause_emits_what_the_workflow_without_pauses_emits(
    workflow_steps: list[dict[str, Any]], body: dict[str, Any]
) -> None:
    """Whatever the graph: a run that stops at approvals and waits and is let through each of them
    ends exactly as the same graph without them, with the same ids."""
    definition = definition_of(workflow_steps)
    plain = compile_workflow("wf", 1, definition_of(_without_pauses(workflow_steps)))
    workflow = compile_workflow("wf", 1, definition)
    the_event = {**event(), **body, "event_id": "e1", "org_id": "o", "event_type": "lead.created"}
    execution = workflow.evaluate(the_event, RoutingState())
    emitted = Execution.from_record({**execution.as_record(), "evaluated_at_ms": 0})
    emitted.crm_commands, emitted.notifications = list(execution.crm_commands), list(execution.notifications)
    emitted.agent_calls = list(execution.agent_calls)
    now = T0
    while execution.pause is not None:
        suspension = Suspension.from_json(suspend(execution, now).to_json())
        outcome = Outcome.WAIT_ELAPSED if suspension.kind == "wait" else Outcome.APPROVED
        now += 1
        execution = resume(workflow, suspension, Resumption(outcome, now, "a@acme.io"), now)
        emitted.crm_commands += execution.crm_commands
        emitted.notifications += execution.notifications
        emitted.agent_calls += execution.agent_calls
    emitted.status, emitted.score, emitted.tier, emitted.owner = (
        execution.status,
        execution.score,
        execution.tier,
        execution.owner,
    )
    emitted.actions, emitted.logs = execution.actions, execution.logs
    assert _observable(emitted) == _observable(plain.evaluate(the_event, RoutingState()))


def test_strategies_still_generate_graphs_without_pauses() -> None:
    """The plain strategy stays pause-free, so the routing property tests keep their meaning."""

    @settings(max_examples=50, deadline=None)
    @given(workflow_steps=steps)
    def check(workflow_steps: list[dict[str, Any]]) -> None:
        assert _without_pauses(workflow_steps) == workflow_steps

    check()
