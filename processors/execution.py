"""What one evaluation of one workflow version for one event decided."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple


class ExecutionStatus(StrEnum):
    COMPLETED = "completed"
    FILTERED_OUT = "filtered_out"
    PENDING = "pending"
    """Stopped at an approval or wait step, which the orchestrator will run."""


class CrmCommandPlan(NamedTuple):
    """A planned write to the CRM. `step` is the step's path (`4`, `2.0.1`): ids derive from it, so
    they are stable per step across replays. A NamedTuple, like the other plans built per evaluation:
    a frozen dataclass costs four times as much to build (1 µs)."""

    step: str
    operation: str
    properties: dict[str, str]
    email: str | None


class WebhookNotification(NamedTuple):
    step: str
    event_type: str
    payload: dict[str, Any]


@dataclass(slots=True)
class Execution:
    execution_id: str
    org_id: str
    workflow_id: str
    workflow_version: int
    event_id: str
    event_type: str
    lead_id: str
    event_occurred_at_ms: int
    status: ExecutionStatus = ExecutionStatus.COMPLETED
    status_reason: str = ""
    score: int = 0
    score_breakdown: dict[str, int] = field(default_factory=dict)
    tier: str = ""
    owner: str = ""
    routing_reason: str = ""
    actions: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    """One token per deciding step, `path:kind:outcome` (`0:filter:pass`, `3:route:emea`,
    `4:branch:else`), stored as a ClickHouse array so analysts can query which paths were taken."""
    crm_commands: list[CrmCommandPlan] = field(default_factory=list)
    notifications: list[WebhookNotification] = field(default_factory=list)
    trace: list[dict[str, Any]] | None = None
    """Step-by-step explanation; only filled when evaluating with `trace=True` (the test endpoint)."""
    evaluated_at_ms: int = 0
    """When the worker evaluated it; set by the worker as it writes the record (the engine has no clock)."""

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
        }
