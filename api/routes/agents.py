"""Deployed agents: an agent template version running in a project, bound to the org's connections
and webhook subscriptions. Deploying, pausing, resuming, upgrading and archiving are audited; an
upgrade is a template change, so an agent key's, and any where the project's policy says so, opens
a change request for an Approver. An agent's executions are its backing workflow's
(`workflow_id`): `GET /executions?workflow_id=…`."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.agent_budgets import announce_paused
from api.control_plane import agents, change_requests, organizations
from api.control_plane.tables import Agent
from api.cursors import PageCursor, PageLimit, after_cursor, row_page
from api.deps import AgentsManage, AgentsRead, Db, Schedule
from api.models import MAX_VERSION, ActorOut, Page, StrictBody, required_ms
from api.problems import responses
from api.routes.change_requests import ChangeRequestOut, change_request_out
from processors.change_control import template_change_needs_approval

router = APIRouter(prefix="/api/v1/agents", tags=["agents"], responses=responses(401, 403, 422))
AgentStatus = Literal["active", "paused", "archived"]
PausedReason = Literal["paused_by_person", "over_budget", "template_archived"]
_BINDINGS = 100


class AgentOut(BaseModel):
    id: str
    project_id: str
    name: str
    template_id: str
    template_version: int = Field(description="The template version it runs until upgraded.")
    workflow_id: str = Field(description="Its backing workflow: its executions are this workflow's.")
    workflow_version: int
    status: AgentStatus
    paused_reason: PausedReason | None
    paused_detail: str | None
    connection_ids: list[str]
    webhook_ids: list[str]
    created_by: ActorOut
    created_at_ms: int
    updated_at_ms: int


class AgentCreate(StrictBody):
    name: str = Field(min_length=1, max_length=200)
    template_id: str = Field(description="A template of the organization; the agent is deployed in its project.")
    template_version: int | None = Field(
        default=None, ge=1, le=MAX_VERSION, description="An activated version; defaults to the active one."
    )
    connection_ids: list[str] = Field(default_factory=list, max_length=_BINDINGS)
    webhook_ids: list[str] = Field(default_factory=list, max_length=_BINDINGS)


class AgentUpdate(StrictBody):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    connection_ids: list[str] | None = Field(default=None, max_length=_BINDINGS)
    webhook_ids: list[str] | None = Field(default=None, max_length=_BINDINGS)


class PauseRequest(StrictBody):
    detail: str = Field(default="", max_length=2000, description="Why; shown with the agent and to invokers.")


class UpgradeRequest(StrictBody):
    template_version: int = Field(ge=1, le=MAX_VERSION, description="An activated version of its template.")
    reason: str = Field(default="", max_length=2000, description="Why; shown to the Approver when approval is needed.")


def agent_out(agent: Agent) -> AgentOut:
    return AgentOut(
        id=agent.id,
        project_id=agent.project_id,
        name=agent.name,
        template_id=agent.template_id,
        template_version=agent.template_version,
        workflow_id=agent.workflow_id,
        workflow_version=agent.workflow_version,
        status=agent.status,
        paused_reason=agent.paused_reason,
        paused_detail=agent.paused_detail,
        connection_ids=agent.connection_ids,
        webhook_ids=agent.webhook_ids,
        created_by=ActorOut(**agent.created_by),
        created_at_ms=required_ms(agent.created_at),
        updated_at_ms=required_ms(agent.updated_at),
    )


@router.get("", response_model=Page[AgentOut], responses=responses(400))
async def list_agents(
    principal: AgentsRead,
    database: Db,
    project_id: str | None = None,
    template_id: str | None = None,
    status: AgentStatus | None = None,
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> Page[AgentOut]:
    """Newest first."""
    filters = ((Agent.project_id, project_id), (Agent.template_id, template_id), (Agent.status, status))
    async with database.transaction() as session:
        found = await agents.list_agents(session, principal.scope, filters, limit + 1, after_cursor(cursor))
    return row_page(found, limit, lambda a: (a.created_at, a.id), agent_out)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AgentOut, responses=responses(404, 409))
async def deploy_agent(body: AgentCreate, principal: AgentsManage, database: Db) -> AgentOut:
    """Deploys an activated template version in the template's project; it runs at once (an event
    trigger in its policy starts it for events too; with none, only invocations do)."""
    async with database.transaction() as session:
        agent = await agents.deploy(
            session,
            principal.scope,
            principal.actor,
            body.name,
            body.template_id,
            body.template_version,
            body.connection_ids,
            body.webhook_ids,
        )
    return agent_out(agent)


@router.get("/{agent_id}", response_model=AgentOut, responses=responses(404))
async def get_agent(agent_id: str, principal: AgentsRead, database: Db) -> AgentOut:
    async with database.transaction() as session:
        return agent_out(await agents.get(session, principal.scope, agent_id))


@router.patch("/{agent_id}", response_model=AgentOut, responses=responses(404, 409))
async def update_agent(agent_id: str, body: AgentUpdate, principal: AgentsManage, database: Db) -> AgentOut:
    """Its name and bindings; what it runs changes only by an upgrade."""
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    async with database.transaction() as session:
        return agent_out(await agents.update(session, principal.scope, principal.actor, agent_id, changes))


@router.delete("/{agent_id}", response_model=AgentOut, responses=responses(404, 409))
async def archive_agent(agent_id: str, principal: AgentsManage, database: Db) -> AgentOut:
    """Archives it: it stops for good; it and its executions stay readable."""
    async with database.transaction() as session:
        return agent_out(await agents.archive(session, principal.scope, principal.actor, agent_id))


@router.post("/{agent_id}/pause", response_model=AgentOut, responses=responses(404, 409))
async def pause_agent(
    agent_id: str, principal: AgentsManage, database: Db, schedule: Schedule, body: PauseRequest | None = None
) -> AgentOut:
    """Stops it (events its policy is triggered by too) and refuses invocations (409 `agent-paused`)
    until resumed, announced as `agent.paused`. Needs no approval: it is the safe direction."""
    detail = (body.detail if body else "") or f"paused by {principal.actor.label}"
    async with database.transaction() as session:
        paused = await agents.pause(
            session, principal.scope, principal.actor, agent_id, agents.PAUSED_BY_PERSON, detail
        )
    await announce_paused(database, schedule, paused)
    return agent_out(paused)


@router.post("/{agent_id}/resume", response_model=AgentOut, responses=responses(404, 409))
async def resume_agent(agent_id: str, principal: AgentsManage, database: Db) -> AgentOut:
    """Runs the version it is pinned to again; 409 `not-deployable` when that version was archived
    (upgrade it instead). An agent its budget paused is resumed by a person only (403
    `person-required` for a key)."""
    async with database.transaction() as session:
        return agent_out(await agents.resume(session, principal.scope, principal.actor, agent_id))


@router.post(
    "/{agent_id}/upgrade",
    response_model=AgentOut,
    responses={
        202: {"model": ChangeRequestOut, "description": "Approval needed: a change request was opened instead."},
        **responses(404, 409),
    },
)
async def upgrade_agent(
    agent_id: str, body: UpgradeRequest, principal: AgentsManage, database: Db
) -> AgentOut | JSONResponse:
    """Moves the agent to another activated version of its template. An agent key's upgrade, and
    any where the project's policy (`agent_template_change_requires_approval`) says so, opens a
    change request (kind `agent.upgrade`) for an Approver and answers 202 with it; the agent keeps
    running its version until the request is approved."""
    async with database.transaction() as session:
        agent, workflow_version = await agents.prepare_upgrade(
            session, principal.scope, principal.actor, agent_id, body.template_version
        )
        project = await organizations.get_project(session, principal.scope, agent.project_id)
        if template_change_needs_approval(organizations.policy_of(project), principal.agent):
            request = await change_requests.open_upgrade(
                session, principal.scope, principal.actor, agent, workflow_version, body.template_version, body.reason
            )
            return JSONResponse(change_request_out(request).model_dump(mode="json"), status_code=202)
        upgraded = await agents.apply_upgrade(
            session, principal.actor, agent_id, principal.org_id, body.template_version, workflow_version
        )
    return agent_out(upgraded)
