"""Manual runs of a workflow and who is enrolled in it now.

A manual run is real: each lead becomes an inbound event (trigger `manual`) that only this workflow
evaluates, through Kafka like every event, so it has the same ordering, ids, side effects and
history as any execution. (`POST /workflows/{id}/test` is the side-effect-free dry run.)
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api import manual_runs
from api.control_plane import workflows
from api.deps import Db, ExecutionsRead, WorkflowsRun, get_executions, get_history, get_publisher, get_run_keys
from api.event_publisher import EventPublisher
from api.executions_reader import ExecutionsReader
from api.history_reader import InboundHistoryReader
from api.manual_runs import IdempotencyKey
from api.models import MAX_EVENTS_PER_REQUEST, EventIn, LeadIn, Page
from api.problems import Problem, responses
from api.run_keys import RunKeys, fingerprint
from processors import ids
from processors.events import EventType

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
    earlier = await manual_runs.replayed(run_keys, principal.org_id, workflow_id, idempotency_key, request, response)
    if earlier is not None:
        return RunAccepted(**earlier)
    if workflow.kind != "workflow":
        raise Problem(
            409, "agent-workflow", "Managed through its agent", "run it with POST /api/v1/agents/{id}/execute"
        )
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
    run_id = manual_runs.run_id(principal.org_id, workflow_id, idempotency_key)
    accepted = RunAccepted(
        run_id=run_id,
        workflow_id=workflow_id,
        version=workflow.active_version,
        event_ids=[ids.manual_event_id(run_id, lead["lead_id"]) for lead in leads],
    )
    answer = await manual_runs.publish(
        run_keys,
        publisher,
        response,
        principal.org_id,
        workflow_id,
        idempotency_key,
        request,
        accepted.model_dump(),
        lambda run: list(zip(run["event_ids"], leads, strict=True)),
        body.event_type,
    )
    return RunAccepted(**answer)


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
