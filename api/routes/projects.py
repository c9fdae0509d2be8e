"""Projects group workflows (and later agents) and carry the four-eyes policy for them."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.control_plane import organizations
from api.control_plane.tables import Project
from api.deps import Db, ProjectsManage, ProjectsRead
from api.models import Items, required_ms
from api.problems import responses
from processors.change_control import ProjectPolicy

router = APIRouter(prefix="/api/v1/projects", tags=["projects"], responses=responses(401, 403, 422))


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectCreate(_Body):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    policy: ProjectPolicy = Field(default_factory=ProjectPolicy)


class ProjectUpdate(_Body):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    policy: ProjectPolicy | None = None


class ProjectOut(BaseModel):
    id: str
    name: str
    description: str
    is_default: bool
    policy: ProjectPolicy
    created_at_ms: int
    updated_at_ms: int


def project_out(project: Project) -> ProjectOut:
    return ProjectOut(
        id=project.id,
        name=project.name,
        description=project.description,
        is_default=project.is_default,
        policy=organizations.policy_of(project),
        created_at_ms=required_ms(project.created_at),
        updated_at_ms=required_ms(project.updated_at),
    )


@router.get("", response_model=Items[ProjectOut])
async def list_projects(principal: ProjectsRead, database: Db) -> Items[ProjectOut]:
    """A project-scoped key sees its own project only."""
    async with database.transaction() as session:
        return Items(items=[project_out(p) for p in await organizations.list_projects(session, principal.scope)])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ProjectOut, responses=responses(409))
async def create_project(body: ProjectCreate, principal: ProjectsManage, database: Db) -> ProjectOut:
    async with database.transaction() as session:
        project = await organizations.create_project(
            session, principal.scope, principal.actor, body.name, body.description, body.policy
        )
    return project_out(project)


@router.get("/{project_id}", response_model=ProjectOut, responses=responses(404))
async def get_project(project_id: str, principal: ProjectsRead, database: Db) -> ProjectOut:
    async with database.transaction() as session:
        return project_out(await organizations.get_project(session, principal.scope, project_id))


@router.patch("/{project_id}", response_model=ProjectOut, responses=responses(404, 409))
async def update_project(project_id: str, body: ProjectUpdate, principal: ProjectsManage, database: Db) -> ProjectOut:
    """Turning `policy.workflow_activation_requires_approval` on sends later activations to Approvers;
    change requests already open stay open."""
    changes = body.model_dump(exclude_none=True)
    async with database.transaction() as session:
        project = await organizations.update_project(session, principal.scope, principal.actor, project_id, changes)
    return project_out(project)


@router.delete(
    "/{project_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, responses=responses(404, 409)
)
async def delete_project(project_id: str, principal: ProjectsManage, database: Db) -> Response:
    """Only an empty project (no workflows, no keys); never the default one."""
    async with database.transaction() as session:
        await organizations.delete_project(session, principal.scope, principal.actor, project_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
