"""What one evaluation of one workflow version for one event decided."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ExecutionStatus(StrEnum):
    COMPLETED = "completed"
    FILTERED_OUT = "filtered_out"
    PENDING = "pending"
    """Stopped at an approval or wait step, which the orchestrator will run."""


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


class Execution:
    """One evaluation: its identity, passed in, and its outcome, which the steps fill in as they run.

    A plain class, like the plans above: as a dataclass, building executions took 3 % of the
    qualifier's CPU in the interpreted `__init__` the dataclasses module writes."""

    __slots__ = (
        "actions",
        "crm_commands",
        "decisions",
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
        "routing_reason",
        "score",
        "score_breakdown",
        "status",
        "status_reason",
        "tier",
        "trace",
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
        self.trace: list[dict[str, Any]] | None = None
        """Step-by-step explanation; only filled when evaluating with `trace=True` (the test endpoint)."""
        self.evaluated_at_ms = 0
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
