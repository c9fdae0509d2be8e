"""What becomes of an execution that stopped at an approval or a wait step.

The qualifier turns a paused execution into a `Suspension`: everything the rest of the workflow
needs (the execution so far, the context its steps read, where it stopped and until when). The
orchestrator keeps it and, on an outcome (a decision, a timeout, the wait's end, an exit), runs
`resume` on the workflow version the execution started with. Ids derive from the execution and the
step path, so a resumed execution emits exactly the commands and notifications it would have
emitted had it never stopped, and a resume repeated after a crash emits the same ones again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from processors import ids
from processors.compiler import CompiledWorkflow, iso_timestamp, run_steps
from processors.conditions import describe
from processors.events import lead_email
from processors.execution import PAUSED, Execution, ExecutionStatus, WebhookNotification, timeline_entry
from processors.model import (
    AddTagAction,
    ApprovalStep,
    BranchStep,
    CreateTaskAction,
    CrmUpdateAction,
    FilterStep,
    LogAction,
    Step,
    WaitStep,
    WebhookNotifyAction,
    WorkflowDefinition,
)
from processors.routing import RoutingState


class Outcome(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"
    WAIT_ELAPSED = "wait_elapsed"
    EXITED = "exited"


APPROVAL_OUTCOMES = frozenset({Outcome.APPROVED, Outcome.REJECTED, Outcome.TIMED_OUT})


@dataclass(frozen=True, slots=True)
class Suspension:
    execution: dict[str, Any]
    """The execution's record as it stopped, evaluation time included."""
    context: dict[str, Any]
    step: str
    kind: str
    """`approval` or `wait`."""
    due_at_ms: int
    """When the wait ends, or when the approval times out."""
    approvers: tuple[str, ...] = ()

    @property
    def execution_id(self) -> str:
        return str(self.execution["execution_id"])

    @property
    def approval_id(self) -> str:
        return ids.approval_id(self.execution_id, self.step)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "execution": self.execution,
                "context": self.context,
                "step": self.step,
                "kind": self.kind,
                "due_at_ms": self.due_at_ms,
                "approvers": list(self.approvers),
            }
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> Suspension:
        return cls.from_dict(orjson.loads(data))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Suspension:
        return cls(
            raw["execution"], raw["context"], raw["step"], raw["kind"], raw["due_at_ms"], tuple(raw["approvers"])
        )


def suspend(execution: Execution, at_ms: int) -> Suspension:
    """Records the pause on the execution's timeline (and, for an approval, plans the
    `approval.requested` notification) and returns what the orchestrator keeps. Call for an
    execution whose status is paused, at the moment it is recorded."""
    pause = execution.pause
    assert pause is not None and execution.status in PAUSED
    due_at_ms = pause.due_at_ms(at_ms)
    execution.paused_step, execution.due_at_ms = pause.step, due_at_ms
    if pause.kind == "approval":
        approval_id = ids.approval_id(execution.execution_id, pause.step)
        execution.timeline.append(
            timeline_entry(
                at_ms,
                "awaiting_approval",
                pause.step,
                note=f"approval {approval_id} by {', '.join(pause.approvers)}; times out at {iso_timestamp(due_at_ms)}",
            )
        )
        execution.notifications.append(
            WebhookNotification(
                f"{pause.step}.requested",
                "approval.requested",
                _approval_payload(
                    "approval.requested",
                    execution,
                    pause.step,
                    pause.context,
                    at_ms,
                    approvers=list(pause.approvers),
                    expires_at=iso_timestamp(due_at_ms),
                ),
            )
        )
    else:
        until = iso_timestamp(due_at_ms)
        execution.timeline.append(timeline_entry(at_ms, "waiting", pause.step, note=f"until {until}"))
    return Suspension(
        {**execution.as_record(), "evaluated_at_ms": execution.evaluated_at_ms},
        pause.context,
        pause.step,
        pause.kind,
        due_at_ms,
        pause.approvers,
    )


@dataclass(frozen=True, slots=True)
class Resumption:
    outcome: Outcome
    at_ms: int
    """When the outcome happened: the decision, the timeout or the wait's end, the exit event."""
    actor: str = ""
    """Who decided, for a person's decision."""
    note: str = ""
    """The decider's comment, or for an exit the event that matched."""


def resume(workflow: CompiledWorkflow, suspension: Suspension, resumption: Resumption, now_ms: int) -> Execution:
    """The execution after `resumption`: finished, or paused again at a later step (then
    `execution.pause` is set and the caller suspends it again). `workflow` must be the version the
    execution started with."""
    assert workflow.version == suspension.execution["workflow_version"]
    execution = Execution.from_record(suspension.execution)
    execution.evaluated_at_ms = now_ms
    step, outcome = suspension.step, resumption.outcome
    context = dict(suspension.context)
    execution.timeline.append(timeline_entry(resumption.at_ms, outcome.value, step, resumption.actor, resumption.note))
    if outcome is Outcome.EXITED:
        execution.status = ExecutionStatus.EXITED
        execution.status_reason = f"left the workflow at step {step}: the exit condition matched {resumption.note}"
        execution.decisions.append(f"{step}:exit")
        return execution
    token = "wait:elapsed" if outcome is Outcome.WAIT_ELAPSED else f"approval:{outcome.value}"
    execution.decisions.append(f"{step}:{token}")
    if outcome in APPROVAL_OUTCOMES:
        execution.notifications.append(
            WebhookNotification(
                f"{step}.decided",
                "approval.decided",
                _approval_payload(
                    "approval.decided",
                    execution,
                    step,
                    context,
                    resumption.at_ms,
                    decision=outcome.value,
                    decided_by=resumption.actor,
                    comment=resumption.note,
                ),
            )
        )
    first_action = len(execution.actions)
    execution.status, execution.status_reason = ExecutionStatus.COMPLETED, ""
    steps, rejected = _path_after(workflow, step, outcome)
    finished = run_steps(steps, context, execution, RoutingState())
    if finished and rejected:
        execution.status = ExecutionStatus.REJECTED
        execution.status_reason = (
            f"approval at step {step} timed out" if outcome is Outcome.TIMED_OUT else f"rejected by {resumption.actor}"
        )
    execution.timeline.append(timeline_entry(now_ms, "resumed", step, actions=execution.actions[first_action:]))
    return execution


def _path_after(workflow: CompiledWorkflow, step: str, outcome: Outcome) -> tuple[Any, bool]:
    """(the steps to run, whether the execution ends rejected once they ran)."""
    rest = workflow.continuations[step]
    if outcome in (Outcome.APPROVED, Outcome.WAIT_ELAPSED):
        return rest, False
    fallbacks = workflow.approval_fallbacks[step]
    if outcome is Outcome.REJECTED or fallbacks.on_timeout == "reject":
        return fallbacks.on_reject, True
    if fallbacks.on_timeout == "branch":
        return fallbacks.timeout_branch, False
    return rest, False


def _approval_payload(
    event_type: str, execution: Execution, step: str, context: dict[str, Any], at_ms: int, **details: Any
) -> dict[str, Any]:
    return {
        "type": event_type,
        "timestamp": iso_timestamp(at_ms),
        "data": {
            "approval_id": ids.approval_id(execution.execution_id, step),
            "execution_id": execution.execution_id,
            "workflow_id": execution.workflow_id,
            "workflow_version": execution.workflow_version,
            "step": step,
            "lead_id": execution.lead_id,
            "email": lead_email(context),
            "score": execution.score,
            "tier": execution.tier,
            "owner": execution.owner,
            **details,
        },
    }


def approval_outcomes(definition: WorkflowDefinition, step: str) -> dict[str, list[str]]:
    """What deciding an approval does, step by step, for the people deciding it: `on_approve`,
    `on_reject` and `on_timeout` (the fallback's steps)."""
    approval = step_at(definition.steps, step)
    if not isinstance(approval, ApprovalStep):
        raise ValueError(f"step {step} is a {approval.type} step, not an approval")
    after = [describe_step(s) for s in steps_after(definition.steps, step)]
    reject = [describe_step(s) for s in approval.on_reject] + ["end the execution as rejected"]
    timeout = {
        "approve": [f"after {approval.timeout_hours:g} h without a decision: approve", *after],
        "reject": [f"after {approval.timeout_hours:g} h without a decision: reject", *reject],
        "branch": [
            f"after {approval.timeout_hours:g} h without a decision: take the timeout branch",
            *(describe_step(s) for s in approval.timeout_branch),
        ],
    }[approval.on_timeout]
    return {"on_approve": after or ["end the execution as completed"], "on_reject": reject, "on_timeout": timeout}


def step_at(steps: Sequence[Step], path: str) -> Step:
    """The step at a path such as `3`, `2.0.1` or `4.else.0`."""
    parts = path.split(".")
    step = steps[int(parts[0])]
    for arm, index in zip(parts[1::2], parts[2::2], strict=True):
        if not isinstance(step, BranchStep):
            raise ValueError(f"{path} goes into a {step.type} step, which holds no steps")
        branch = step.otherwise if arm == "else" else step.arms[int(arm)].steps
        step = branch[int(index)]
    return step


def steps_after(steps: Sequence[Step], path: str) -> list[Step]:
    """The steps that run after the one at `path`: the rest of its list, then the rest after each
    branch it sits in (a branch returns to the step after it)."""
    parts = path.split(".")
    if len(parts) == 1:
        return list(steps[int(parts[0]) + 1 :])
    outer = steps[int(parts[0])]
    assert isinstance(outer, BranchStep)
    arm = outer.otherwise if parts[1] == "else" else outer.arms[int(parts[1])].steps
    return steps_after(arm, ".".join(parts[2:])) + list(steps[int(parts[0]) + 1 :])


def describe_step(step: Step) -> str:
    if isinstance(step, FilterStep):
        return f"filter: continue only if {describe(step.condition)}"
    if isinstance(step, ApprovalStep):
        return f"approval by {', '.join(step.approvers)}"
    if isinstance(step, WaitStep):
        if step.hours is not None:
            return f"wait {step.hours:g} h"
        return f"wait until {step.until.isoformat() if step.until else step.until_field}"
    if isinstance(step, BranchStep):
        return f"branch: {len(step.arms)} arm(s) and otherwise"
    if isinstance(step, CrmUpdateAction):
        return "update the lead in the CRM (score, tier, owner)"
    if isinstance(step, WebhookNotifyAction):
        return f"notify webhook subscribers: {step.event_type}"
    if isinstance(step, AddTagAction):
        return f"tag the lead {step.tag!r} in the CRM"
    if isinstance(step, CreateTaskAction):
        return f"create the CRM task {step.title!r}"
    if isinstance(step, LogAction):
        return f"log {step.message!r}"
    return f"{step.type} step"
