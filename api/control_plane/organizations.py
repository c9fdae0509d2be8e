"""Organizations and their projects.

Every organization has a default project, created with it and never deleted, so every workflow has a
project even when nobody made one. A project can be deleted only when nothing belongs to it, nor
ever did a change request or an approval (they keep the project they were opened in).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.control_plane import audit
from api.control_plane.actors import Actor, Scope
from api.control_plane.ids import new_id
from api.control_plane.rows import one
from api.control_plane.tables import AgentTemplate, ApiKey, Approval, ChangeRequest, Organization, Project, Workflow
from api.problems import Problem, not_found
from processors.change_control import ProjectPolicy

DEFAULT_PROJECT = "Default"


async def create_org(session: AsyncSession, name: str, actor: Actor) -> tuple[Organization, Project]:
    org = Organization(id=new_id("org"), name=name, config_revision=0)
    session.add(org)
    await session.flush()
    audit.record(session, org.id, actor, "org.create", ("org", org.id), after={"name": name})
    project = await create_project(session, Scope(org.id), actor, DEFAULT_PROJECT, "", ProjectPolicy(), default=True)
    return org, project


async def get_org(session: AsyncSession, org_id: str) -> Organization | None:
    return await session.get(Organization, org_id)


async def find_org(session: AsyncSession, id_or_name: str) -> Organization | None:
    """By id, or by name when exactly one organization has it (operators type names)."""
    found = await session.get(Organization, id_or_name)
    if found is not None:
        return found
    named = (await session.scalars(select(Organization).where(Organization.name == id_or_name).limit(2))).all()
    return named[0] if len(named) == 1 else None


async def bump_revision(session: AsyncSession, org_id: str) -> None:
    """Tells the workers that something they read changed: they compare this counter at most every
    DRIPPULSE_WORKFLOW_REFRESH_S and reload the organization when it moved. Same transaction as the
    change, so they can never see the new revision with the old data, nor miss a committed change."""
    await session.execute(
        update(Organization).where(Organization.id == org_id).values(config_revision=Organization.config_revision + 1)
    )


async def list_projects(session: AsyncSession, scope: Scope) -> list[Project]:
    query = select(Project).where(Project.org_id == scope.org_id)
    if scope.project_id is not None:
        query = query.where(Project.id == scope.project_id)
    return list((await session.scalars(query.order_by(Project.created_at, Project.id))).all())


async def get_project(session: AsyncSession, scope: Scope, project_id: str, lock: bool = False) -> Project:
    if scope.project_id is not None and scope.project_id != project_id:
        raise not_found("project", project_id)
    return await one(session, Project, "project", scope.org_id, project_id, lock=lock)


async def default_project(session: AsyncSession, org_id: str) -> Project:
    found = await session.scalar(select(Project).where(Project.org_id == org_id, Project.is_default))
    if found is None:
        raise not_found("project", "default")
    return found


def policy_of(project: Project) -> ProjectPolicy:
    return ProjectPolicy.model_validate(project.policy)


async def _name_taken(session: AsyncSession, org_id: str, name: str, other_than: str | None = None) -> None:
    query = select(Project.id).where(Project.org_id == org_id, Project.name == name)
    if other_than is not None:
        query = query.where(Project.id != other_than)
    if await session.scalar(query) is not None:
        raise Problem(409, "name-taken", "Name taken", f"this organization already has a project named {name!r}")


async def create_project(
    session: AsyncSession,
    scope: Scope,
    actor: Actor,
    name: str,
    description: str,
    policy: ProjectPolicy,
    default: bool = False,
) -> Project:
    await _name_taken(session, scope.org_id, name)
    project = Project(
        id=new_id("prj"),
        org_id=scope.org_id,
        name=name,
        description=description,
        is_default=default,
        policy=policy.model_dump(),
    )
    session.add(project)
    await session.flush()
    await session.refresh(project)
    audit.record(
        session,
        scope.org_id,
        actor,
        "project.create",
        ("project", project.id),
        after=audit.snapshot(project),
        project_id=project.id,
    )
    return project


async def update_project(
    session: AsyncSession, scope: Scope, actor: Actor, project_id: str, changes: dict[str, Any]
) -> Project:
    project = await get_project(session, scope, project_id, lock=True)
    before = audit.snapshot(project)
    if "name" in changes:
        await _name_taken(session, scope.org_id, changes["name"], other_than=project_id)
    for field, value in changes.items():
        setattr(project, field, value)
    project.updated_at = func.now()
    await session.flush()
    await session.refresh(project)
    audit.record(
        session,
        scope.org_id,
        actor,
        "project.update",
        ("project", project_id),
        before,
        audit.snapshot(project),
        project_id=project_id,
    )
    return project


async def _holds(session: AsyncSession, table: Any, project_id: str) -> bool:
    return await session.scalar(select(table.id).where(table.project_id == project_id).limit(1)) is not None


async def delete_project(session: AsyncSession, scope: Scope, actor: Actor, project_id: str) -> None:
    project = await get_project(session, scope, project_id, lock=True)
    if project.is_default:
        raise Problem(409, "default-project", "Default project", "the default project cannot be deleted")
    for table, what in ((Workflow, "workflows and agents"), (AgentTemplate, "agent templates"), (ApiKey, "API keys")):
        if await _holds(session, table, project_id):
            raise Problem(409, "project-not-empty", "Project not empty", f"move or remove its {what} first")
    for history, what in ((ChangeRequest, "change requests"), (Approval, "approvals")):
        if await _holds(session, history, project_id):
            raise Problem(
                409,
                "project-has-history",
                "Project has history",
                f"it holds {what}, which keep the project they were opened in even after their workflow moved; "
                "a project with a decision history is kept",
            )
    before = audit.snapshot(project)
    await session.delete(project)
    audit.record(session, scope.org_id, actor, "project.delete", ("project", project_id), before=before)
