"""What one evaluation of one workflow version for one event decided."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ExecutionStatus(StrEnum):
    COMPLETED = "completed"
    FILTERED_OUT = "filtered_out"


@dataclass(frozen=True, slots=True)
class CrmUpdate:
    """A planned write to the CRM; `step_index` names the step so ids stay stable per step."""

    step_index: int
    properties: dict[str, str]
    email: str | None


@dataclass(frozen=True, slots=True)
class WebhookNotification:
    step_index: int
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
    crm_updates: list[CrmUpdate] = field(default_factory=list)
    notifications: list[WebhookNotification] = field(default_factory=list)
