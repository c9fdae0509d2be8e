"""Workflows: versioned definitions in projects. Editing an active workflow creates a new draft
version; a version runs only once activated, and where the project's policy (or an agent key) says
so, activation is a change request another person approves."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.control_plane import change_requests, lead_models, organizations, workflows
from api.control_plane.tables import Workflow, WorkflowVersion
from api.cursors import PageCursor, PageLimit, after_cursor, row_page
from api.definitions import workflow_definition
from api.deps import Db, SettingsDep, WorkflowsActivate, WorkflowsAuthor, WorkflowsRead, WorkflowsTest, get_history
from api.dry_run import Planned, decide, planned
from api.history_reader import InboundHistoryReader
from api.models import (
    MAX_VERSION,
    ActivateRequest,
    EventIn,
    ExecutionFields,
    Items,
    Page,
    ReplayRequest,
    WorkflowCreate,
    WorkflowTestRequest,
    WorkflowUpdate,
    ms,
    required_ms,
)
from api.permissions import Principal
from api.problems import responses
from api.routes.change_requests import ChangeRequestOut, change_request_out
from processors.change_control import activation_needs_approval
from processors.compiler import CompiledWorkflow, compile_workflow
from processors.explain import explain
from processors.learned_model import Weights
from processors.model import WorkflowDefinition
from processors.replay import compare_versions
from processors.routing import RoutingState
from processors.step_types import step_types

router = APIRouter(prefix="/api/v1/workflows", tags=["workflows"], responses=responses(401, 403, 422))
WorkflowStatus = Literal["draft", "active", "inactive", "archived", "quarantined"]


class WorkflowOut(BaseModel):
    id: str
    project_id: str
    name: str
    description: str
    status: WorkflowStatus
    active_version: int | None
    latest_version: int
    kind: Literal["workflow", "agent"] = Field(
        description="agent: the backing workflow of a deployed agent, readable here and changed only through "
        "/agents (409 `agent-workflow` otherwise); lists show workflows only."
    )
    quarantine_reason: str | None = Field(
        description="Set when the workers could not compile the active version and took it out of service "
        "(status `quarantined`); activating a version clears it."
    )
    created_at_ms: int
    updated_at_ms: int
    definition: dict[str, Any] | None = Field(
        default=None, description="The latest version's definition (null in lists)."
    )


class VersionOut(BaseModel):
    version: int
    status: Literal["draft", "proposed", "active", "superseded"] = Field(
        description="proposed: frozen while a change request for it is open"
    )
    definition: dict[str, Any]
    authored_by: str
    created_at_ms: int
    activated_at_ms: int | None


class StepType(BaseModel):
    name: str
    description: str
    config_schema: dict[str, Any] = Field(description="JSON Schema of the step's configuration.")
    example: dict[str, Any]


class TestResult(BaseModel):
    """Per sample event: whether it enrolls (with the trigger's explanation) and, if it does, what the
    execution decides, what it would send, and a step-by-step trace."""

    index: int
    event_id: str
    enrolled: bool
    trigger: dict[str, Any]
    execution: ExecutionFields | None = None
    planned: Planned | None = None
    trace: list[dict[str, Any]] | None = None


class TestReport(BaseModel):
    workflow_id: str
    version: int
    results: list[TestResult]


class ReplayExample(BaseModel):
    event_id: str
    lead_id: str
    before: Any
    after: Any


class ReplayReport(BaseModel):
    workflow_id: str
    base_version: int
    candidate_version: int
    events: int = Field(description="Events replayed.")
    evaluated: int = Field(description="Events that triggered either version.")
    leads_changed: int
    changes: dict[str, int] = Field(description="Leads whose enrollment, tier, owner or actions would change.")
    examples: dict[str, list[ReplayExample]]


def workflow_out(workflow: Workflow, definition: dict[str, Any] | None = None) -> WorkflowOut:
    return WorkflowOut(
        id=workflow.id,
        project_id=workflow.project_id,
        name=workflow.name,
        description=workflow.description,
        status=workflow.status,
        active_version=workflow.active_version,
        latest_version=workflow.latest_version,
        kind=workflow.kind,
        quarantine_reason=workflow.quarantine_reason,
        created_at_ms=required_ms(workflow.created_at),
        updated_at_ms=required_ms(workflow.updated_at),
        definition=definition,
    )


def _version_out(version: WorkflowVersion) -> VersionOut:
    return VersionOut(
        version=version.version,
        status=version.status,
        definition=version.definition,
        authored_by=version.authored_by,
        created_at_ms=required_ms(version.created_at),
        activated_at_ms=ms(version.activated_at),
    )


async def _with_definition(database: Db, principal: Principal, workflow: Workflow) -> WorkflowOut:
    async with database.transaction() as session:
        latest = await workflows.get_version(session, principal.scope, workflow.id, workflow.latest_version)
    return workflow_out(workflow, latest.definition)


@router.get("/step_types", response_model=Items[StepType])
async def list_step_types(_: WorkflowsRead) -> Items[StepType]:
    """Every step type with the JSON Schema of its configuration and a valid example."""
    return Items(items=[StepType(**item) for item in step_types()])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WorkflowOut, responses=responses(404))
async def create_workflow(
    body: WorkflowCreate, principal: WorkflowsAuthor, database: Db, settings: SettingsDep
) -> WorkflowOut:
    """Version 1, a draft. A project-scoped key creates it in its project."""
    definition = workflow_definition(body.definition, settings.schedule_min_interval_s)
    async with database.transaction() as session:
        workflow, _ = await workflows.create_workflow(
            session, principal.scope, principal.actor, body.project_id, body.name, body.description, definition
        )
    return workflow_out(workflow, definition)


@router.get("", response_model=Page[WorkflowOut], responses=responses(400))
async def list_workflows(
    principal: WorkflowsRead,
    database: Db,
    status: WorkflowStatus | None = None,
    project_id: str | None = None,
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> Page[WorkflowOut]:
    """Newest first."""
    async with database.transaction() as session:
        found = await workflows.list_workflows(
            session, principal.scope, status, project_id, limit + 1, after_cursor(cursor)
        )
    return row_page(found, limit, lambda w: (w.created_at, w.id), workflow_out)


@router.get("/{workflow_id}", response_model=WorkflowOut, responses=responses(404))
async def get_workflow(workflow_id: str, principal: WorkflowsRead, database: Db) -> WorkflowOut:
    async with database.transaction() as session:
        workflow = await workflows.get_workflow(session, principal.scope, workflow_id)
    return await _with_definition(database, principal, workflow)


@router.patch("/{workflow_id}", response_model=WorkflowOut, responses=responses(404, 409))
async def update_workflow(
    workflow_id: str, body: WorkflowUpdate, principal: WorkflowsAuthor, database: Db, settings: SettingsDep
) -> WorkflowOut:
    floor = settings.schedule_min_interval_s
    definition = workflow_definition(body.definition, floor) if body.definition is not None else None
    changes = body.model_dump(exclude_unset=True, exclude={"definition"}, exclude_none=True)
    async with database.transaction() as session:
        updated = await workflows.update_workflow(
            session, principal.scope, principal.actor, workflow_id, changes, definition
        )
    return await _with_definition(database, principal, updated)


@router.get("/{workflow_id}/versions", response_model=Items[VersionOut], responses=responses(404))
async def list_versions(workflow_id: str, principal: WorkflowsRead, database: Db) -> Items[VersionOut]:
    async with database.transaction() as session:
        return Items(
            items=[_version_out(v) for v in await workflows.list_versions(session, principal.scope, workflow_id)]
        )


@router.get("/{workflow_id}/versions/{version}", response_model=VersionOut, responses=responses(404))
async def get_version(
    workflow_id: str, version: Annotated[int, Path(ge=1, le=MAX_VERSION)], principal: WorkflowsRead, database: Db
) -> VersionOut:
    async with database.transaction() as session:
        return _version_out(await workflows.get_version(session, principal.scope, workflow_id, version))


@router.post(
    "/{workflow_id}/activate",
    response_model=WorkflowOut,
    responses={
        202: {"model": ChangeRequestOut, "description": "Approval needed: a change request was opened instead."},
        **responses(404, 409),
    },
)
async def activate_workflow(
    workflow_id: str, principal: WorkflowsActivate, database: Db, body: ActivateRequest | None = None
) -> WorkflowOut | JSONResponse:
    """Makes a version (default: the latest) the active one; workers pick it up within a second.
    Where the project's policy requires approval, or the caller is an agent key, this opens a change
    request for an Approver instead and answers 202 with it; 403 `person-required` when no person
    stands behind the change (a key acting for nobody asks for a version written through one)."""
    async with database.transaction() as session:
        workflow = await workflows.changeable(session, principal.scope, workflow_id)
        number = body.version if body and body.version else workflow.latest_version
        project = await organizations.get_project(session, principal.scope, workflow.project_id)
        if activation_needs_approval(organizations.policy_of(project), principal.agent):
            request = await change_requests.open_activation(
                session, principal.scope, principal.actor, workflow, number, body.reason if body else ""
            )
            return JSONResponse(change_request_out(request).model_dump(mode="json"), status_code=202)
        activated = await workflows.activate(session, principal.scope, principal.actor, workflow_id, number)
    return await _with_definition(database, principal, activated)


@router.post("/{workflow_id}/deactivate", response_model=WorkflowOut, responses=responses(404, 409))
async def deactivate_workflow(workflow_id: str, principal: WorkflowsActivate, database: Db) -> WorkflowOut:
    """Stops the workflow for new events; needs no approval (it is the safe direction)."""
    async with database.transaction() as session:
        return workflow_out(await workflows.deactivate(session, principal.scope, principal.actor, workflow_id))


@router.post("/{workflow_id}/archive", response_model=WorkflowOut, responses=responses(404, 409))
async def archive_workflow(workflow_id: str, principal: WorkflowsAuthor, database: Db) -> WorkflowOut:
    """Stops the workflow for new events and freezes it; its versions and executions stay readable.
    Runs already under way finish on the version that started them."""
    async with database.transaction() as session:
        return workflow_out(
            await workflows.deactivate(session, principal.scope, principal.actor, workflow_id, status="archived")
        )


async def _compiled(database: Db, principal: Principal, workflow_id: str, number: int | None) -> CompiledWorkflow:
    async with database.transaction() as session:
        workflow = await workflows.get_workflow(session, principal.scope, workflow_id)
        version = await workflows.get_version(session, principal.scope, workflow_id, number or workflow.latest_version)
    return compile_workflow(workflow_id, version.version, WorkflowDefinition.model_validate(version.definition))


@router.post("/{workflow_id}/test", response_model=TestReport, responses=responses(404))
async def test_workflow(
    workflow_id: str, body: WorkflowTestRequest, principal: WorkflowsTest, database: Db
) -> TestReport:
    """Runs sample events through the exact engine the worker runs, with no side effects: nothing is
    produced or recorded, and round-robin rotates from the start of the team. Returns per event whether
    it enrolls, the outcome, the planned actions and a step-by-step trace."""
    compiled = await _compiled(database, principal, workflow_id, body.version)
    routing = RoutingState()
    model = None
    if compiled.uses_model:
        async with database.transaction() as session:
            model = await lead_models.current_weights(session, principal.org_id)

    def run() -> list[TestResult]:
        return [
            _test_one(index, compiled, event, principal.org_id, routing, model)
            for index, event in enumerate(body.events)
        ]

    return TestReport(workflow_id=workflow_id, version=compiled.version, results=await run_in_threadpool(run))


def _test_one(
    index: int, compiled: CompiledWorkflow, event: EventIn, org_id: str, routing: RoutingState, model: Weights | None
) -> TestResult:
    """`model`: the org's current learned model, for a workflow that reads it, as the qualifier has it."""
    record = {**event.to_record(org_id), "event_type": event.event_type.value}
    trigger: dict[str, Any] = {
        "event_type": record["event_type"],
        "event_type_matches": record["event_type"] in compiled.event_types,
    }
    if compiled.trigger is not None:
        trigger["condition"] = explain(compiled.trigger, record)
    if not compiled.triggers(record):
        return TestResult(index=index, event_id=record["event_id"], enrolled=False, trigger=trigger)
    execution = decide(compiled, record, routing, model)
    return TestResult(
        index=index,
        event_id=record["event_id"],
        enrolled=True,
        trigger=trigger,
        execution=ExecutionFields(**execution.as_record()),
        planned=planned(execution),
        trace=execution.trace,
    )


@router.post("/{workflow_id}/replay", response_model=ReplayReport, responses=responses(404))
async def replay_workflow(
    workflow_id: str,
    body: ReplayRequest,
    principal: WorkflowsTest,
    database: Db,
    history: Annotated[InboundHistoryReader, Depends(get_history)],
) -> ReplayReport:
    """What would change if `candidate_version` replaced `base_version`: this org's real inbound events
    (the most recent `last`, optionally within [since, until)) run through both versions. Answers how
    many leads would change enrollment, tier, owner or actions, with examples. No side effects."""
    base = await _compiled(database, principal, workflow_id, body.base_version)
    candidate = await _compiled(database, principal, workflow_id, body.candidate_version)
    since, until = ms(body.since), ms(body.until)

    def run() -> dict[str, Any]:
        events = history.events(principal.org_id, body.last, since, until)
        return compare_versions(base, candidate, events, body.examples).as_dict()

    report = await run_in_threadpool(run)
    return ReplayReport(
        workflow_id=workflow_id, base_version=body.base_version, candidate_version=body.candidate_version, **report
    )
