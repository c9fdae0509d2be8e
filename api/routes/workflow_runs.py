"""Manual runs of a workflow and who is enrolled in it now.

A manual run is real: each lead becomes an inbound event (trigger `manual`) that only this workflow
evaluates, through Kafka like every event, so it has the same ordering, ids, side effects and
history as any execution. (`POST /workflows/{id}/test` is the side-effect-free dry run.)
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.control_plane import workflows
from api.deps import Db, ExecutionsRead, WorkflowsRun, get_executions, get_history, get_publisher, get_run_keys
from api.event_publisher import EventPublisher, PublishFailed
from api.executions_reader import ExecutionsReader
from api.history_reader import InboundHistoryReader
from api.models import MAX_EVENTS_PER_REQUEST, EventIn, LeadIn, Page
from api.problems import RETRY_AFTER, Problem, responses
from api.run_keys import KeyedRun, RunKeys, fingerprint
from processors import ids
from processors.events import EventType
from streams.clock import now_ms

router = APIRouter(prefix="/api/v1/workflows", tags=["workflows"], responses=responses(401, 403, 422))


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    leads: list[LeadIn] = Field(
        default_factory=list, max_length=MAX_EVENTS_PER_REQUEST, description="Leads to run it for, as given."
    )
    lead_ids: list[str] = Field(
        default_factory=list,
        max_length=MAX_EVENTS_PER_REQUEST,
        description="Leads DripPulse has seen: each runs with its latest values from the event history.",
    )
    event_type: EventType = Field(
        default=EventType.LEAD_UPDATED, description="The event type the run's events carry (lead.* only)."
    )

    @model_validator(mode="after")
    def _some_leads(self) -> RunRequest:
        if not self.leads and not self.lead_ids:
            raise ValueError("give 'leads', 'lead_ids' or both")
        named = Counter([lead.lead_id for lead in self.leads] + self.lead_ids)
        twice = sorted(lead_id for lead_id, times in named.items() if times > 1)
        if twice:
            raise ValueError(f"each lead once per run (one event per lead); given more than once: {twice[:100]}")
        if not self.event_type.is_lead_event:
            raise ValueError("a manual run sends lead events: lead.created or lead.updated")
        if len(self.leads) + len(self.lead_ids) > MAX_EVENTS_PER_REQUEST:
            raise ValueError(f"at most {MAX_EVENTS_PER_REQUEST} leads per run")
        return self


class RunAccepted(BaseModel):
    run_id: str
    workflow_id: str
    version: int = Field(description="The active version, which evaluates the run's events.")
    event_ids: list[str] = Field(description="One per lead; the executions' `event_id`.")


class Enrollment(BaseModel):
    execution_id: str
    lead_id: str
    workflow_version: int
    status: str = Field(description="awaiting_approval | waiting")
    paused_step: str = Field(description="The step's path in the definition.")
    due_at_ms: int = Field(description="When the wait ends, or when the approval times out.")
    since_ms: int = Field(description="When it reached that step.")
    trigger: str


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Makes a retry safe: the same key with the same body is the same run (202 with the same "
        "`run_id` and `event_ids`, `Idempotent-Replayed: true`, nothing run again) for 24 hours; the same key "
        "with another body is 422 `idempotency-key-reused`. Scoped to the org and the workflow. 1-255 visible "
        "ASCII characters, e.g. a UUID. Without it, every request is a new run.",
    ),
]


@router.post("/{workflow_id}/runs", status_code=202, response_model=RunAccepted, responses=responses(404, 409, 503))
async def run_workflow(
    workflow_id: str,
    body: RunRequest,
    principal: WorkflowsRun,
    database: Db,
    history: Annotated[InboundHistoryReader, Depends(get_history)],
    publisher: Annotated[EventPublisher, Depends(get_publisher)],
    run_keys: Annotated[RunKeys, Depends(get_run_keys)],
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> RunAccepted:
    """Runs the active version for each lead, with side effects (CRM commands, webhooks), whatever
    the trigger says; a lead still enrolled (paused at an approval or wait) is not enrolled again.
    Answers once the events are on Kafka; the executions follow within about a second. The run's
    ids derive from (org, workflow, `Idempotency-Key`, lead), a random key standing in when none is
    sent, so a retry with the key publishes nothing new, and a retry of an unacknowledged publish
    (503) publishes the same events, whose copies collapse downstream."""
    async with database.transaction() as session:
        workflow = await workflows.get_workflow(session, principal.scope, workflow_id)
    request = fingerprint(body.model_dump(mode="json"))
    if idempotency_key is not None:
        earlier = await run_keys.find(principal.org_id, workflow_id, idempotency_key)
        if earlier is not None and (answer := _replayed(earlier, request, response)) is not None:
            return answer
    if workflow.status != "active" or workflow.active_version is None:
        raise Problem(409, "not-active", "The workflow is not active", f"its status is {workflow.status}")
    known = await run_in_threadpool(history.latest_leads, principal.org_id, body.lead_ids)
    unknown = [lead_id for lead_id in body.lead_ids if lead_id not in known]
    if unknown:
        raise Problem(
            404,
            "unknown-leads",
            "Unknown leads",
            f"{len(unknown)} lead id(s) have no lead event in the history",
            lead_ids=unknown[:100],
        )
    leads: list[dict[str, Any]] = [
        EventIn(event_type=body.event_type, lead=lead).to_record(principal.org_id)["lead"] for lead in body.leads
    ]
    leads += [known[lead_id] for lead_id in body.lead_ids]
    run_id = ids.manual_run_id(principal.org_id, workflow_id, idempotency_key or uuid.uuid4().hex)
    run = KeyedRun(
        request,
        RunAccepted(
            run_id=run_id,
            workflow_id=workflow_id,
            version=workflow.active_version,
            event_ids=[ids.manual_event_id(run_id, lead["lead_id"]) for lead in leads],
        ).model_dump(),
        now_ms(),
        published=False,
    )
    if idempotency_key is not None:
        earlier = await run_keys.bind(principal.org_id, workflow_id, idempotency_key, run)
        if earlier is not None:
            if (answer := _replayed(earlier, request, response)) is not None:
                return answer
            run = earlier
    records = [
        {
            "event_id": event_id,
            "org_id": principal.org_id,
            "event_type": body.event_type.avro_symbol,
            "occurred_at_ms": run.occurred_at_ms,
            "source": "manual_run",
            "lead": lead,
            "crm_object": None,
            "previous": None,
            "trigger": "MANUAL",
            "workflow_id": workflow_id,
        }
        for event_id, lead in zip(run.answer["event_ids"], leads, strict=True)
    ]
    try:
        await publisher.publish(records)
    except PublishFailed as exc:
        raise Problem(
            503,
            "broker-unavailable",
            "Events not accepted",
            "the broker did not acknowledge them; send the same body with the same Idempotency-Key "
            "after Retry-After seconds",
            headers={"Retry-After": RETRY_AFTER},
        ) from exc
    if idempotency_key is not None:
        await run_keys.published(principal.org_id, workflow_id, idempotency_key, run)
    return RunAccepted(**run.answer)


def _replayed(earlier: KeyedRun, request: str, response: Response) -> RunAccepted | None:
    """The earlier answer for the key when its run was published; None while it is not (a publish
    in flight, or one that failed), so this request publishes the same events; a problem when the
    key named another body."""
    if earlier.fingerprint != request:
        raise Problem(
            422,
            "idempotency-key-reused",
            "Idempotency key reused",
            "this Idempotency-Key was sent with another body for this workflow; use a new key for a new run",
        )
    if not earlier.published:
        return None
    response.headers["Idempotent-Replayed"] = "true"
    return RunAccepted(**earlier.answer)


@router.get("/{workflow_id}/enrollments", response_model=Page[Enrollment], responses=responses(400, 404))
async def list_enrollments(
    workflow_id: str,
    principal: ExecutionsRead,
    database: Db,
    executions: Annotated[ExecutionsReader, Depends(get_executions)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Page[Enrollment]:
    """Leads enrolled now: executions paused at an approval or a wait step, soonest due first."""
    async with database.transaction() as session:
        await workflows.get_workflow(session, principal.scope, workflow_id)
    items, next_cursor = await run_in_threadpool(executions.enrollments, principal.org_id, workflow_id, limit, cursor)
    return Page(items=[Enrollment(**item) for item in items], next_cursor=next_cursor)
