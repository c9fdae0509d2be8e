"""Request and response bodies shared by several routers of /api/v1; a router's own models live
beside it. Timestamps in responses are milliseconds since the epoch (`*_ms`), like the stream records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from processors.events import EventType, validation_problems

MAX_EVENTS_PER_REQUEST = 1000
MAX_EVENT_ID_LENGTH = 128
MAX_VERSION = 2_147_483_647


T = TypeVar("T")


class StrictBody(BaseModel):
    """A request body: an unknown field is a mistake the client hears about (422), not one ignored."""

    model_config = ConfigDict(extra="forbid")


def ms(moment: datetime | None) -> int | None:
    """A time without a zone is UTC, as an event's `occurred_at` is: `timestamp()` would take it as
    the server's local time, and fails on 0001-01-01 whatever that is."""
    if moment is None:
        return None
    return int((moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def required_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class Items(BaseModel, Generic[T]):
    items: list[T]


class ActorOut(BaseModel):
    type: Literal["user", "api_key", "system"]
    id: str
    label: str
    user_id: str | None


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass back as `cursor` for the next page; null on the last page.")


class LeadIn(StrictBody):
    lead_id: str = Field(min_length=1, max_length=256)
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    first_name: str | None = Field(default=None, max_length=256)
    last_name: str | None = Field(default=None, max_length=256)
    company: str | None = Field(default=None, max_length=512)
    title: str | None = Field(default=None, max_length=512)
    country: str | None = Field(default=None, min_length=2, max_length=2)
    industry: str | None = Field(default=None, max_length=256)
    employees: int | None = Field(default=None, ge=0, le=2_147_483_647)
    annual_revenue: float | None = Field(default=None, ge=0)
    lead_source: str | None = Field(default=None, max_length=256)
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("country")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return value.upper() if value else value


class CrmObjectIn(StrictBody):
    object_type: str = Field(min_length=1, max_length=64)
    object_id: str = Field(min_length=1, max_length=256)
    lead_id: str | None = Field(default=None, max_length=256)
    properties: dict[str, str | int | float | bool] = Field(default_factory=dict)


class EventIn(StrictBody):
    """One inbound event. `event_id` is optional; when given, a repeat within 24 h is not produced again."""

    event_id: str | None = Field(default=None, min_length=1, max_length=MAX_EVENT_ID_LENGTH)
    event_type: EventType
    occurred_at: datetime | None = None
    source: str | None = Field(default=None, max_length=128)
    lead: LeadIn | None = None
    crm_object: CrmObjectIn | None = None
    previous: dict[str, str | int | float | bool | None] | None = Field(
        default=None, description="For *.updated events: previous values of changed fields, by path (lead.title)."
    )

    @model_validator(mode="after")
    def _payload_matches_type(self) -> EventIn:
        record = self.to_record("-")
        record["event_type"] = self.event_type
        problems = validation_problems(record, None)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def to_record(self, org_id: str) -> dict[str, Any]:
        """The Avro record for drip.events.inbound; assigns an event id when the client gave none."""
        occurred = self.occurred_at or datetime.now(UTC)
        if occurred.tzinfo is None:
            occurred = occurred.replace(tzinfo=UTC)
        lead = None
        if self.lead is not None:
            lead = self.lead.model_dump()
            lead["attributes"] = {k: _text(v) for k, v in self.lead.attributes.items()}
        crm_object = None
        if self.crm_object is not None:
            crm_object = self.crm_object.model_dump()
            crm_object["properties"] = {k: _text(v) for k, v in self.crm_object.properties.items()}
        return {
            "event_id": self.event_id or str(uuid.uuid4()),
            "org_id": org_id,
            "event_type": self.event_type.avro_symbol,
            "occurred_at_ms": int(occurred.timestamp() * 1000),
            "source": self.source,
            "lead": lead,
            "crm_object": crm_object,
            "previous": {path: _text(v) for path, v in self.previous.items()} if self.previous is not None else None,
        }


def _text(value: str | int | float | bool | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class EventsAccepted(BaseModel):
    accepted: int
    event_ids: list[str]
    duplicates: list[str] = Field(description="Client event ids already accepted in the dedup window.")


class WorkflowCreate(StrictBody):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    project_id: str | None = Field(default=None, description="Defaults to the organization's default project.")
    definition: dict[str, Any] = Field(description="A trigger and a step graph; see GET /workflows/step_types.")


class WorkflowUpdate(StrictBody):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    project_id: str | None = Field(default=None, description="Moves the workflow to another project.")
    definition: dict[str, Any] | None = Field(
        default=None, description="Replaces the latest version while it is a draft, else creates a new draft."
    )


class ActivateRequest(StrictBody):
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION, description="Defaults to the latest version.")
    reason: str = Field(default="", max_length=2000, description="Why; shown to the Approver when approval is needed.")


class WorkflowTestRequest(StrictBody):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)
    version: int | None = Field(
        default=None, ge=1, le=MAX_VERSION, description="Defaults to the latest version (drafts too)."
    )


class ReplayRequest(StrictBody):
    base_version: int = Field(
        ge=1, le=MAX_VERSION, description="The version to compare against, usually the active one."
    )
    candidate_version: int = Field(ge=1, le=MAX_VERSION, description="The version to try, usually a draft.")
    last: int = Field(default=1000, ge=1, le=20_000, description="How many of the most recent events to replay.")
    since: datetime | None = Field(default=None, description="Only events that occurred at or after this time.")
    until: datetime | None = Field(default=None, description="Only events that occurred before this time.")
    examples: int = Field(default=5, ge=0, le=50, description="Examples to return per kind of change.")


class TimelineEntryOut(BaseModel):
    at_ms: int
    what: Literal[
        "evaluated",
        "awaiting_approval",
        "waiting",
        "approved",
        "rejected",
        "timed_out",
        "wait_elapsed",
        "exited",
        "resumed",
    ]
    step: str = Field(description="The step's path; empty for the evaluation.")
    actor: str = Field(description="Who decided, for a person's decision.")
    note: str
    actions: list[str] = Field(description="Actions emitted in the phase this entry opens.")


ExecutionStatus = Literal["completed", "filtered_out", "awaiting_approval", "waiting", "rejected", "exited"]


class ExecutionFields(BaseModel):
    """What an evaluation decided: the fields of the execution record (schemas/avro/execution.avsc)."""

    execution_id: str
    org_id: str
    workflow_id: str
    workflow_version: int
    event_id: str
    event_type: str
    lead_id: str
    status: str = Field(
        description="completed | filtered_out | awaiting_approval | waiting | rejected | exited "
        "(pending: recorded before approvals and waits were executed)"
    )
    status_reason: str
    score: int
    score_breakdown: dict[str, int] = Field(description="rule id -> points awarded")
    tier: str
    owner: str
    routing_reason: str
    actions: list[str]
    logs: list[str]
    decisions: list[str] = Field(description="One token per deciding step, path:kind:outcome.")
    event_occurred_at_ms: int
    trigger: Literal["event", "manual", "schedule"] = "event"
    timeline: list[TimelineEntryOut] = Field(default_factory=list, description="What happened to it, in order.")
    paused_step: str = Field(default="", description="While awaiting_approval or waiting: the step's path.")
    due_at_ms: int | None = Field(
        default=None, description="While paused: when the wait ends or the approval times out."
    )


class ExecutionOut(ExecutionFields):
    evaluated_at_ms: int
    ingested_at_ms: int = Field(description="When the row reached ClickHouse.")
