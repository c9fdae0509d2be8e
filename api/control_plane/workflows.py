"""Workflows and their versions.

A version is editable while it is a `draft`. Once proposed for activation (a change request) or
activated, it is frozen: editing the workflow then creates a new draft version, so what a reviewer
approved and what executions ran is exactly what the version holds. One version is active at a time;
activating another supersedes it. Every change of the active set bumps the organization's revision,
in the same transaction, which is how the workers learn about it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.control_plane import audit
from api.control_plane.actors import Actor, Scope
from api.control_plane.agent_targets import refuse_foreign_agents
from api.control_plane.ids import new_id
from api.control_plane.organizations import bump_revision, default_project, get_project, policy_of
from api.control_plane.rows import newest_first, one, scoped
from api.control_plane.tables import ChangeRequest, Workflow, WorkflowVersion
from api.problems import Problem, not_found
from processors.change_control import move_refusal


async def create_workflow(
    session: AsyncSession,
    scope: Scope,
    actor: Actor,
    project_id: str | None,
    name: str,
    description: str,
    definition: dict[str, Any],
    kind: str = "workflow",
) -> tuple[Workflow, WorkflowVersion]:
    project = await get_project(session, scope, project_id) if project_id else None
    if project is None:
        project = await get_project(session, scope, scope.project_id) if scope.project_id else None
    if project is None:
        project = await default_project(session, scope.org_id)
    workflow = Workflow(
        id=new_id("wf"),
        org_id=scope.org_id,
        project_id=project.id,
        name=name,
        description=description,
        status="draft",
        latest_version=1,
        kind=kind,
    )
    session.add(workflow)
    await session.flush()
    version = WorkflowVersion(
        workflow_id=workflow.id,
        version=1,
        org_id=scope.org_id,
        status="draft",
        definition=definition,
        authored_by=actor.id,
        authored_by_user_id=actor.user_id,
    )
    session.add(version)
    await session.flush()
    await session.refresh(workflow)
    await session.refresh(version)
    audit.record(
        session,
        scope.org_id,
        actor,
        "workflow.create",
        ("workflow", workflow.id),
        after={**audit.snapshot(workflow), "definition": definition},
        project_id=project.id,
    )
    return workflow, version


async def get_workflow(session: AsyncSession, scope: Scope, workflow_id: str, lock: bool = False) -> Workflow:
    return await one(session, Workflow, "workflow", scope.org_id, workflow_id, scope.project_id, lock)


async def changeable(session: AsyncSession, scope: Scope, workflow_id: str, kind: str = "workflow") -> Workflow:
    """The workflow, locked, if it may change: not archived, and changed through the API of its
    kind (an agent's backing workflow only through /agents, so an agent's pause, pinned version and
    input schema cannot be gone around)."""
    workflow = await get_workflow(session, scope, workflow_id, lock=True)
    if workflow.kind != kind:
        raise Problem(
            409,
            "agent-workflow",
            "Managed through its agent",
            "this workflow runs a deployed agent; pause, resume, upgrade or archive the agent under /api/v1/agents",
        )
    if workflow.status == "archived":
        raise Problem(409, "archived", "Workflow archived", "an archived workflow can be read, not changed")
    return workflow


async def list_workflows(
    session: AsyncSession,
    scope: Scope,
    status: str | None,
    project_id: str | None,
    limit: int,
    after: tuple[datetime, str] | None = None,
    kind: str = "workflow",
) -> list[Workflow]:
    """Newest first; `after` is the (created_at, id) of the previous page's last row. Agents'
    backing workflows are listed as agents (`/agents`), not here."""
    query = scoped(Workflow, scope, (Workflow.project_id, project_id), (Workflow.status, status), (Workflow.kind, kind))
    return await newest_first(session, query, Workflow.created_at, Workflow.id, limit, after)


async def workflow_ids(session: AsyncSession, org_id: str, project_id: str) -> list[str]:
    """The ids of a project's workflows: how history in ClickHouse (keyed by workflow) is narrowed."""
    query = select(Workflow.id).where(Workflow.org_id == org_id, Workflow.project_id == project_id)
    return list((await session.scalars(query)).all())


async def list_versions(session: AsyncSession, scope: Scope, workflow_id: str) -> list[WorkflowVersion]:
    await get_workflow(session, scope, workflow_id)
    query = select(WorkflowVersion).where(WorkflowVersion.workflow_id == workflow_id).order_by(WorkflowVersion.version)
    return list((await session.scalars(query)).all())


async def get_version(
    session: AsyncSession, scope: Scope, workflow_id: str, number: int, lock: bool = False
) -> WorkflowVersion:
    await get_workflow(session, scope, workflow_id)
    query = select(WorkflowVersion).where(WorkflowVersion.workflow_id == workflow_id, WorkflowVersion.version == number)
    version = await session.scalar(query.with_for_update() if lock else query)
    if version is None:
        raise not_found("workflow version", f"{workflow_id}@{number}")
    return version


async def update_workflow(
    session: AsyncSession,
    scope: Scope,
    actor: Actor,
    workflow_id: str,
    changes: dict[str, Any],
    definition: dict[str, Any] | None,
    kind: str = "workflow",
) -> Workflow:
    """Name, description and project change in place. A new definition replaces the latest version
    while it is a draft; once frozen, it becomes a new draft version instead."""
    workflow = await changeable(session, scope, workflow_id, kind)
    before = audit.snapshot(workflow)
    if changes.get("project_id") not in (None, workflow.project_id):
        await _movable(session, scope, workflow, changes["project_id"])
    for field, value in changes.items():
        setattr(workflow, field, value)
    version_change: dict[str, Any] = {}
    if definition is not None:
        latest = await get_version(session, scope, workflow_id, workflow.latest_version, lock=True)
        if latest.status == "draft":
            version_change = {"version": latest.version, "definition_before": latest.definition}
            latest.definition = definition
            latest.authored_by, latest.authored_by_user_id = actor.id, actor.user_id
        else:
            workflow.latest_version += 1
            session.add(
                WorkflowVersion(
                    workflow_id=workflow_id,
                    version=workflow.latest_version,
                    org_id=scope.org_id,
                    status="draft",
                    definition=definition,
                    authored_by=actor.id,
                    authored_by_user_id=actor.user_id,
                )
            )
            version_change = {"version": workflow.latest_version, "definition_before": None}
    workflow.updated_at = func.now()
    await session.flush()
    await session.refresh(workflow)
    after = audit.snapshot(workflow)
    if version_change:
        before["definition"] = version_change["definition_before"]
        after["definition"] = definition
    audit.record(
        session,
        scope.org_id,
        actor,
        "workflow.update",
        ("workflow", workflow_id),
        before,
        after,
        project_id=workflow.project_id,
    )
    return workflow


async def refuse_while_a_request_is_open(session: AsyncSession, workflow_id: str, before: str) -> None:
    """One change request per workflow is open at a time, and it stays in the project it was opened in."""
    already = await session.scalar(
        select(ChangeRequest.id).where(ChangeRequest.workflow_id == workflow_id, ChangeRequest.status == "open")
    )
    if already is not None:
        raise Problem(
            409,
            "change-request-open",
            "A change request is open",
            f"{already} is still open for this workflow; cancel it or wait for its decision before {before}",
            change_request_id=already,
        )


async def _movable(session: AsyncSession, scope: Scope, workflow: Workflow, project_id: str) -> None:
    """Refuses a move that would change how the workflow's activations are reviewed (see
    `move_refusal`), or that would leave an open change request behind in the project it was
    opened in. The workflow is locked, so no activation or request can start meanwhile; so is the
    destination, so its policy holds until the move commits and a deletion waits and then finds it
    not empty. An active workflow takes its agent steps along: their agents must be the
    destination's."""
    destination = await get_project(session, scope, project_id, lock=True)
    source = await get_project(session, Scope(scope.org_id), workflow.project_id)
    await refuse_while_a_request_is_open(session, workflow.id, "moving the workflow (it was opened in this project)")
    refusal = move_refusal(policy_of(source), policy_of(destination), workflow.active_version is not None)
    if refusal is not None:
        raise Problem(409, "gated-project", "The move would skip review", refusal)
    if workflow.active_version is not None:
        active = await get_version(session, scope, workflow.id, workflow.active_version)
        await refuse_foreign_agents(session, scope.org_id, project_id, active.definition, active.version)


async def activate(
    session: AsyncSession,
    scope: Scope,
    actor: Actor,
    workflow_id: str,
    number: int,
    change_request_id: str | None = None,
    kind: str = "workflow",
) -> Workflow:
    """Makes `number` the one active version and tells the workers (the organization's revision),
    once every agent its `agent` steps call is one of the workflow's project (422 otherwise)."""
    workflow = await changeable(session, scope, workflow_id, kind)
    target = await get_version(session, scope, workflow_id, number, lock=True)
    await refuse_foreign_agents(session, scope.org_id, workflow.project_id, target.definition, number)
    before = audit.snapshot(workflow)
    now = datetime.now(UTC)
    previous = workflow.active_version
    if previous is not None and previous != number:
        old = await get_version(session, scope, workflow_id, previous, lock=True)
        old.status = "superseded"
    target.status, target.activated_at = "active", now
    workflow.status, workflow.active_version, workflow.updated_at = "active", number, now
    workflow.quarantine_reason = None
    await bump_revision(session, scope.org_id)
    await session.flush()
    after = {**audit.snapshot(workflow), "change_request_id": change_request_id}
    audit.record(
        session,
        scope.org_id,
        actor,
        "workflow.activate",
        ("workflow", workflow_id),
        before,
        after,
        project_id=workflow.project_id,
    )
    return workflow


async def deactivate(
    session: AsyncSession,
    scope: Scope,
    actor: Actor,
    workflow_id: str,
    status: str = "inactive",
    kind: str = "workflow",
) -> Workflow:
    """Stops the workflow for new events (workers notice within a second); `archived` is final.
    Stopping never needs an approval: it is the safe direction."""
    workflow = await changeable(session, scope, workflow_id, kind)
    before = audit.snapshot(workflow)
    if workflow.active_version is not None:
        current = await get_version(session, scope, workflow_id, workflow.active_version, lock=True)
        current.status = "superseded"
    workflow.status, workflow.active_version, workflow.updated_at = status, None, datetime.now(UTC)
    await bump_revision(session, scope.org_id)
    await session.flush()
    action = "workflow.archive" if status == "archived" else "workflow.deactivate"
    audit.record(
        session,
        scope.org_id,
        actor,
        action,
        ("workflow", workflow_id),
        before,
        audit.snapshot(workflow),
        project_id=workflow.project_id,
    )
    return workflow
