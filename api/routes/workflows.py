"""Workflows: versioned definitions. Editing an active workflow creates a new draft version; a
version runs only once activated."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from api.deps import Admin, Reader, Store, get_history
from api.history_reader import InboundHistoryReader
from api.models import ActivateRequest, EventIn, ReplayRequest, WorkflowCreate, WorkflowTestRequest, WorkflowUpdate
from api.problems import Problem, invalid, not_found, validation_errors
from api.store import VersionConflict
from processors.compiler import compile_workflow
from processors.explain import explain
from processors.model import WorkflowDefinition
from processors.replay import compare_versions
from processors.routing import RoutingState
from processors.step_types import step_types

router = APIRouter(prefix="/api/v1/workflows", tags=["workflows"])


def _validated(definition: dict[str, Any]) -> dict[str, Any]:
    """The definition as stored: validated, normalized, with defaults filled in."""
    try:
        model = WorkflowDefinition.model_validate(definition)
    except ValidationError as exc:
        errors = validation_errors(definition, exc.errors(include_url=False))
        for error in errors:
            error["field"] = "$.definition" + error["field"][1:]
        raise invalid(errors, "the workflow definition is invalid") from None
    return model.model_dump(mode="json", exclude_none=True)


async def _workflow(store: Store, org_id: str, workflow_id: str) -> dict[str, Any]:
    workflow = await store.get_workflow(org_id, workflow_id)
    if workflow is None:
        raise not_found("workflow", workflow_id)
    return workflow


async def _changeable(store: Store, org_id: str, workflow_id: str) -> dict[str, Any]:
    workflow = await _workflow(store, org_id, workflow_id)
    if workflow["status"] == "archived":
        raise Problem(409, "archived", "Workflow archived", "an archived workflow can be read, not changed")
    return workflow


async def _with_definition(store: Store, org_id: str, workflow: dict[str, Any]) -> dict[str, Any]:
    latest = await store.get_version(org_id, workflow["id"], workflow["latest_version"])
    return {**workflow, "definition": latest["definition"] if latest else None}


@router.get("/step_types")
async def list_step_types(_: Reader) -> dict[str, Any]:
    """Every step type with the JSON Schema of its configuration and a valid example."""
    return {"items": step_types()}


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_workflow(body: WorkflowCreate, principal: Admin, store: Store) -> dict[str, Any]:
    definition = _validated(body.definition)
    workflow = await store.create_workflow(principal.org_id, body.name, body.description, definition)
    return {**workflow, "definition": definition}


@router.get("")
async def list_workflows(principal: Reader, store: Store, status: str | None = None) -> dict[str, Any]:
    return {"items": await store.list_workflows(principal.org_id, status)}


@router.get("/{workflow_id}")
async def get_workflow(workflow_id: str, principal: Reader, store: Store) -> dict[str, Any]:
    workflow = await _workflow(store, principal.org_id, workflow_id)
    return await _with_definition(store, principal.org_id, workflow)


@router.patch("/{workflow_id}")
async def update_workflow(workflow_id: str, body: WorkflowUpdate, principal: Admin, store: Store) -> dict[str, Any]:
    workflow = await _changeable(store, principal.org_id, workflow_id)
    definition = _validated(body.definition) if body.definition is not None else None
    changes = body.model_dump(exclude_unset=True, exclude={"definition"}, exclude_none=True)
    updated = await store.update_workflow(principal.org_id, workflow, changes, definition)
    return await _with_definition(store, principal.org_id, updated)


@router.get("/{workflow_id}/versions")
async def list_versions(workflow_id: str, principal: Reader, store: Store) -> dict[str, Any]:
    await _workflow(store, principal.org_id, workflow_id)
    return {"items": await store.list_versions(principal.org_id, workflow_id)}


@router.get("/{workflow_id}/versions/{version}")
async def get_version(workflow_id: str, version: int, principal: Reader, store: Store) -> dict[str, Any]:
    await _workflow(store, principal.org_id, workflow_id)
    found = await store.get_version(principal.org_id, workflow_id, version)
    if found is None:
        raise not_found("workflow version", f"{workflow_id}@{version}")
    return found


@router.post("/{workflow_id}/activate")
async def activate_workflow(
    workflow_id: str, principal: Admin, store: Store, body: ActivateRequest | None = None
) -> dict[str, Any]:
    """Makes a version (default: the latest) the active one; workers pick it up within a second."""
    workflow = await _changeable(store, principal.org_id, workflow_id)
    version = body.version if body and body.version else workflow["latest_version"]
    try:
        activated = await store.activate_workflow(principal.org_id, workflow, version)
    except VersionConflict as exc:
        raise Problem(409, "unknown-version", "Unknown version", str(exc)) from None
    return await _with_definition(store, principal.org_id, activated)


@router.post("/{workflow_id}/test")
async def test_workflow(workflow_id: str, body: WorkflowTestRequest, principal: Reader, store: Store) -> dict[str, Any]:
    """Runs sample events through the exact engine the worker runs, with no side effects: nothing is
    produced or recorded, and round-robin rotates from the start of the team. Returns per event whether
    it enrolls, the outcome, the planned actions and a step-by-step trace."""
    workflow = await _workflow(store, principal.org_id, workflow_id)
    number = body.version or workflow["latest_version"]
    version = await store.get_version(principal.org_id, workflow_id, number)
    if version is None:
        raise not_found("workflow version", f"{workflow_id}@{number}")
    compiled = compile_workflow(workflow_id, number, WorkflowDefinition.model_validate(version["definition"]))
    routing = RoutingState()
    return {
        "workflow_id": workflow_id,
        "version": number,
        "results": [
            _test_one(index, compiled, event, principal.org_id, routing) for index, event in enumerate(body.events)
        ],
    }


def _test_one(index: int, compiled: Any, event: EventIn, org_id: str, routing: RoutingState) -> dict[str, Any]:
    record = {**event.to_record(org_id), "event_type": event.event_type.value}
    trigger = {"event_type": record["event_type"], "event_type_matches": record["event_type"] in compiled.event_types}
    if compiled.trigger is not None:
        trigger["condition"] = explain(compiled.trigger, record)
    if not compiled.triggers(record):
        return {"index": index, "event_id": record["event_id"], "enrolled": False, "trigger": trigger}
    execution = compiled.evaluate(record, routing, trace=True)
    return {
        "index": index,
        "event_id": record["event_id"],
        "enrolled": True,
        "trigger": trigger,
        **execution.as_record(),
        "planned": {
            "crm_commands": [
                {"step": c.step, "operation": c.operation, "properties": c.properties} for c in execution.crm_commands
            ],
            "webhook_notifications": [
                {"step": n.step, "event_type": n.event_type, "payload": n.payload} for n in execution.notifications
            ],
        },
        "trace": execution.trace,
    }


@router.post("/{workflow_id}/replay")
async def replay_workflow(
    workflow_id: str,
    body: ReplayRequest,
    principal: Reader,
    store: Store,
    history: Annotated[InboundHistoryReader, Depends(get_history)],
) -> dict[str, Any]:
    """What would change if `candidate_version` replaced `base_version`: this org's real inbound events
    (the most recent `last`, optionally within [since, until)) run through both versions. Answers how
    many leads would change enrollment, tier, owner or actions, with examples. No side effects."""
    versions = []
    for number in (body.base_version, body.candidate_version):
        version = await store.get_version(principal.org_id, workflow_id, number)
        if version is None:
            await _workflow(store, principal.org_id, workflow_id)
            raise not_found("workflow version", f"{workflow_id}@{number}")
        versions.append(compile_workflow(workflow_id, number, WorkflowDefinition.model_validate(version["definition"])))
    since = int(body.since.timestamp() * 1000) if body.since else None
    until = int(body.until.timestamp() * 1000) if body.until else None

    def run() -> dict[str, Any]:
        events = history.events(principal.org_id, body.last, since, until)
        return compare_versions(versions[0], versions[1], events, body.examples).as_dict()

    report = await run_in_threadpool(run)
    return {
        "workflow_id": workflow_id,
        "base_version": body.base_version,
        "candidate_version": body.candidate_version,
        **report,
    }


@router.post("/{workflow_id}/deactivate")
async def deactivate_workflow(workflow_id: str, principal: Admin, store: Store) -> dict[str, Any]:
    workflow = await _changeable(store, principal.org_id, workflow_id)
    return await store.deactivate_workflow(principal.org_id, workflow)


@router.post("/{workflow_id}/archive")
async def archive_workflow(workflow_id: str, principal: Admin, store: Store) -> dict[str, Any]:
    """Stops the workflow for new events and freezes it; its versions and executions stay readable.
    Runs already under way finish on the version that started them."""
    workflow = await _changeable(store, principal.org_id, workflow_id)
    return await store.deactivate_workflow(principal.org_id, workflow, status="archived")
