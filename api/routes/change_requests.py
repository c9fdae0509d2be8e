"""Change requests: proposed activations (of workflow and agent template versions) and agent
upgrades waiting for another person with the Approver role."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from api.control_plane import change_requests
from api.control_plane.tables import ChangeRequest
from api.cursors import PageCursor, PageLimit, after_cursor, row_page
from api.deps import ChangeRequestsDecide, ChangeRequestsRead, Db, WorkflowsActivate
from api.models import ActorOut, Page, ms, required_ms
from api.problems import responses

router = APIRouter(prefix="/api/v1/change_requests", tags=["change requests"], responses=responses(401, 403, 422))
Status = Literal["open", "approved", "rejected", "cancelled"]


class DiffEntry(BaseModel):
    path: str = Field(description="A JSON Pointer (RFC 6901) into the definition, e.g. /steps/1/rules/0/points")
    op: Literal["added", "removed", "changed"]
    before: Any
    after: Any


class ChangeRequestOut(BaseModel):
    id: str
    project_id: str
    workflow_id: str | None = Field(
        description="workflow.activate: the workflow; agent.upgrade: the agent's backing workflow."
    )
    agent_template_id: str | None = Field(description="agent_template.activate and agent.upgrade: the template.")
    agent_id: str | None = Field(description="agent.upgrade: the agent.")
    template_version: int | None = Field(description="agent.upgrade: the template version the agent moves to.")
    kind: Literal["workflow.activate", "agent_template.activate", "agent.upgrade"]
    version: int = Field(
        description="The version to activate: of the workflow (for agent.upgrade, of the agent's backing workflow), "
        "or of the template for agent_template.activate."
    )
    base_version: int | None = Field(description="The version active when the request was opened.")
    diff: list[DiffEntry] = Field(description="From the base version's definition to the proposed one.")
    reason: str
    status: Status
    requested_by: ActorOut
    decided_by: ActorOut | None
    decision_comment: str | None
    created_at_ms: int
    decided_at_ms: int | None


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=2000)


class Rejection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(min_length=1, max_length=2000, description="Why: the author reads it.")


def change_request_out(request: ChangeRequest) -> ChangeRequestOut:
    return ChangeRequestOut(
        id=request.id,
        project_id=request.project_id,
        workflow_id=request.workflow_id,
        agent_template_id=request.agent_template_id,
        agent_id=request.agent_id,
        template_version=request.template_version,
        kind=request.kind,
        version=request.version,
        base_version=request.base_version,
        diff=[DiffEntry(**entry) for entry in request.diff],
        reason=request.reason,
        status=request.status,
        requested_by=ActorOut(**request.requested_by),
        decided_by=ActorOut(**request.decided_by) if request.decided_by else None,
        decision_comment=request.decision_comment,
        created_at_ms=required_ms(request.created_at),
        decided_at_ms=ms(request.decided_at),
    )


@router.get("", response_model=Page[ChangeRequestOut], responses=responses(400))
async def list_change_requests(
    principal: ChangeRequestsRead,
    database: Db,
    status: Status | None = None,
    project_id: str | None = None,
    workflow_id: str | None = None,
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> Page[ChangeRequestOut]:
    """Newest first."""
    async with database.transaction() as session:
        found = await change_requests.list_requests(
            session, principal.scope, status, project_id, workflow_id, limit + 1, after_cursor(cursor)
        )
    return row_page(found, limit, lambda r: (r.created_at, r.id), change_request_out)


@router.get("/{request_id}", response_model=ChangeRequestOut, responses=responses(404))
async def get_change_request(request_id: str, principal: ChangeRequestsRead, database: Db) -> ChangeRequestOut:
    async with database.transaction() as session:
        return change_request_out(await change_requests.get_request(session, principal.scope, request_id))


@router.post("/{request_id}/approve", response_model=ChangeRequestOut, responses=responses(404, 409))
async def approve(
    request_id: str, principal: ChangeRequestsDecide, database: Db, body: Decision | None = None
) -> ChangeRequestOut:
    """Activates the proposed version, in the same transaction as the decision. Refused (403,
    `four-eyes`) to whoever asked for the change or wrote the version; 409 once decided."""
    async with database.transaction() as session:
        request = await change_requests.approve(
            session, principal.scope, principal.actor, request_id, body.comment if body else ""
        )
    return change_request_out(request)


@router.post("/{request_id}/reject", response_model=ChangeRequestOut, responses=responses(404, 409))
async def reject(request_id: str, body: Rejection, principal: ChangeRequestsDecide, database: Db) -> ChangeRequestOut:
    """The proposed version becomes an editable draft again."""
    async with database.transaction() as session:
        request = await change_requests.close(
            session, principal.scope, principal.actor, request_id, "rejected", body.comment
        )
    return change_request_out(request)


@router.post("/{request_id}/cancel", response_model=ChangeRequestOut, responses=responses(404, 409))
async def cancel(request_id: str, principal: WorkflowsActivate, database: Db) -> ChangeRequestOut:
    """Withdraws an open request; the proposed version becomes an editable draft again."""
    async with database.transaction() as session:
        request = await change_requests.close(session, principal.scope, principal.actor, request_id, "cancelled", None)
    return change_request_out(request)
