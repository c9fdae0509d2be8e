"""What one evaluation of one workflow version for one event decided."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ExecutionStatus(StrEnum):
    COMPLETED = "completed"
    FILTERED_OUT = "filtered_out"
    AWAITING_APPROVAL = "awaiting_approval"
    """Stopped at an approval step until someone decides or its timeout does."""
    WAITING = "waiting"
    """Stopped at a wait step until its time comes."""
    REJECTED = "rejected"
    """An approval was rejected (by a person or by its timeout); its `on_reject` steps ran."""
    EXITED = "exited"
    """A later event matched the workflow's exit condition while the lead waited."""


PAUSED = frozenset({ExecutionStatus.AWAITING_APPROVAL, ExecutionStatus.WAITING})
FINAL = frozenset(ExecutionStatus) - PAUSED


class Trigger(StrEnum):
    """What started an execution."""

    EVENT = "event"
    MANUAL = "manual"
    SCHEDULE = "schedule"


class Pause:
    """Where and until when an execution stopped. The engine has no clock: a wait for a duration
    holds `delay_ms`, and whoever records the pause fixes the moment with `due_at_ms(now)`."""

    __slots__ = ("approvers", "context", "delay_ms", "kind", "step", "until_ms")

    def __init__(
        self,
        step: str,
        kind: str,
        context: dict[str, Any],
        delay_ms: int = 0,
        until_ms: int | None = None,
        approvers: tuple[str, ...] = (),
    ) -> None:
        self.step = step
        self.kind = kind
        """`approval` or `wait`."""
        self.context = context
        """What the remaining steps read: the event plus the values earlier steps computed."""
        self.delay_ms = delay_ms
        self.until_ms = until_ms
        self.approvers = approvers

    def due_at_ms(self, reached_at_ms: int) -> int:
        """When the wait ends or the approval times out, for a pause reached at `reached_at_ms`."""
        return self.until_ms if self.until_ms is not None else reached_at_ms + self.delay_ms


TimelineEntry = dict[str, Any]
"""One thing that happened to an execution, in order, as stored: `at_ms`, `what` (`evaluated`,
`awaiting_approval`, `waiting`, `approved`, `rejected`, `timed_out`, `wait_elapsed`, `exited`,
`resumed`), `step`, `actor` (who decided), `note`, and `actions`: those emitted in the phase the
entry opens. A dict, because that is the form the record encoder and ClickHouse take."""


def timeline_entry(
    at_ms: int, what: str, step: str = "", actor: str = "", note: str = "", actions: list[str] | None = None
) -> TimelineEntry:
    return {
        "at_ms": at_ms,
        "what": what,
        "step": step,
        "actor": actor,
        "note": note,
        "actions": actions if actions is not None else [],
    }


class CrmCommandPlan:
    """A planned write to the CRM. `step` is the step's path (`4`, `2.0.1`): ids derive from it, so
    they are stable per step across replays.

    The objects made per evaluation are plain classes with their own `__init__`: compiled
    (README, "The hot path is compiled"), that is the cheapest to build. A NamedTuple is built by
    an interpreted `__new__`, a dataclass by an interpreted `__init__`."""

    __slots__ = ("email", "operation", "properties", "step")

    def __init__(self, step: str, operation: str, properties: dict[str, str], email: str | None) -> None:
        self.step = step
        self.operation = operation
        self.properties = properties
        self.email = email


class WebhookNotification:
    __slots__ = ("event_type", "payload", "step")

    def __init__(self, step: str, event_type: str, payload: dict[str, Any]) -> None:
        self.step = step
        self.event_type = event_type
        self.payload = payload


class AgentCall:
    """A call of a deployed agent an `agent` step planned: the lead as the step saw it, sent as the
    agent's execute input would be (`event_type`), under an event id derived from the execution and
    the step, so a replayed batch calls the agent with the same event, whose copies collapse."""

    __slots__ = ("agent_id", "event_id", "event_type", "lead", "step")

    def __init__(self, step: str, agent_id: str, event_type: str, lead: dict[str, Any], event_id: str) -> None:
        self.step = step
        self.agent_id = agent_id
        self.event_type = event_type
        self.lead = lead
        self.event_id = event_id


class Execution:
    """One evaluation: its identity, passed in, and its outcome, which the steps fill in as they run.

    A plain class, like the plans above: as a dataclass, building executions took 3 % of the
    qualifier's CPU in the interpreted `__init__` the dataclasses module writes."""

    __slots__ = (
        "actions",
        "agent_calls",
        "crm_commands",
        "decisions",
        "due_at_ms",
        "evaluated_at_ms",
        "event_id",
        "event_occurred_at_ms",
        "event_type",
        "execution_id",
        "lead_id",
        "logs",
        "notifications",
        "org_id",
        "owner",
        "pause",
        "paused_step",
        "routing_reason",
        "score",
        "score_breakdown",
        "status",
        "status_reason",
        "tier",
        "timeline",
        "trace",
        "trigger",
        "workflow_id",
        "workflow_version",
    )

    def __init__(
        self,
        execution_id: str,
        org_id: str,
        workflow_id: str,
        workflow_version: int,
        event_id: str,
        event_type: str,
        lead_id: str,
        event_occurred_at_ms: int,
    ) -> None:
        self.execution_id = execution_id
        self.org_id = org_id
        self.workflow_id = workflow_id
        self.workflow_version = workflow_version
        self.event_id = event_id
        self.event_type = event_type
        self.lead_id = lead_id
        self.event_occurred_at_ms = event_occurred_at_ms
        self.status = ExecutionStatus.COMPLETED
        self.status_reason = ""
        self.score = 0
        self.score_breakdown: dict[str, int] = {}
        """rule id -> points awarded"""
        self.tier = ""
        self.owner = ""
        self.routing_reason = ""
        self.actions: list[str] = []
        self.logs: list[str] = []
        self.decisions: list[str] = []
        """One token per deciding step, `path:kind:outcome` (`0:filter:pass`, `3:route:emea`,
        `4:branch:else`), stored as a ClickHouse array so analysts can query which paths were taken."""
        self.crm_commands: list[CrmCommandPlan] = []
        self.notifications: list[WebhookNotification] = []
        self.agent_calls: list[AgentCall] = []
        self.trace: list[dict[str, Any]] | None = None
        """Step-by-step explanation; only filled when evaluating with `trace=True` (the test endpoint)."""
        self.evaluated_at_ms = 0
        """When the worker evaluated it; set by the worker as it writes the record (the engine has no clock)."""
        self.trigger = Trigger.EVENT.value
        self.pause: Pause | None = None
        """Set by the approval or wait step the execution stopped at."""
        self.paused_step = ""
        """While paused, recorded: the path of the step it waits at."""
        self.due_at_ms: int | None = None
        """While paused, recorded: when the wait ends or the approval times out."""
        self.timeline: list[TimelineEntry] = []

    def as_record(self) -> dict[str, Any]:
        """The decision as stored and shown: the fields of execution.avsc except the evaluation time."""
        return {
            "execution_id": self.execution_id,
            "org_id": self.org_id,
            "workflow_id": self.workflow_id,
            "workflow_version": self.workflow_version,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "lead_id": self.lead_id,
            "status": self.status.value,
            "status_reason": self.status_reason,
            "score": self.score,
            "score_breakdown": self.score_breakdown,
            "tier": self.tier,
            "owner": self.owner,
            "routing_reason": self.routing_reason,
            "actions": self.actions,
            "logs": self.logs,
            "decisions": self.decisions,
            "event_occurred_at_ms": self.event_occurred_at_ms,
            "trigger": self.trigger,
            "timeline": self.timeline,
            "paused_step": self.paused_step,
            "due_at_ms": self.due_at_ms,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Execution:
        """The inverse of `as_record` plus the evaluation time: how a paused execution resumes."""
        execution = cls(
            record["execution_id"],
            record["org_id"],
            record["workflow_id"],
            record["workflow_version"],
            record["event_id"],
            record["event_type"],
            record["lead_id"],
            record["event_occurred_at_ms"],
        )
        execution.status = ExecutionStatus(record["status"])
        execution.status_reason = record["status_reason"]
        execution.score = record["score"]
        execution.score_breakdown = dict(record["score_breakdown"])
        execution.tier = record["tier"]
        execution.owner = record["owner"]
        execution.routing_reason = record["routing_reason"]
        execution.actions = list(record["actions"])
        execution.logs = list(record["logs"])
        execution.decisions = list(record["decisions"])
        execution.trigger = record["trigger"]
        execution.timeline = [dict(entry) for entry in record["timeline"]]
        execution.evaluated_at_ms = record["evaluated_at_ms"]
        return execution
