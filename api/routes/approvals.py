"""Approvals: executions stopped at an approval step, waiting for a person (or their timeout)."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from api.control_plane import approvals, workflows
from api.control_plane.actors import Scope
from api.control_plane.tables import Approval
from api.cursors import PageCursor, PageLimit, after_cursor, row_page
from api.deps import ApprovalsDecide, ApprovalsRead, Db
from api.models import ActorOut, Page, ms, required_ms
from api.permissions import Principal
from api.problems import Problem, responses
from processors.model import WorkflowDefinition
from processors.orchestration import approval_outcomes

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/approvals", tags=["approvals"], responses=responses(401, 403, 422))
Status = Literal["pending", "approved", "rejected", "timed_out", "cancelled"]


class Explanation(BaseModel):
    """What the execution decided before it stopped."""

    score: int
    score_breakdown: dict[str, int]
    tier: str
    owner: str
    routing_reason: str
    decisions: list[str]
    actions: list[str] = Field(description="Actions already emitted before the approval step.")


class Outcomes(BaseModel):
    on_approve: list[str] = Field(description="The steps that run when approved, in order.")
    on_reject: list[str]
    on_timeout: list[str] = Field(description="The step's fallback when nobody decides in time.")


class ApprovalOut(BaseModel):
    id: str
    project_id: str
    workflow_id: str
    workflow_version: int = Field(description="The version the execution started with, and resumes on.")
    execution_id: str
    step: str = Field(description="The approval step's path in the definition.")
    lead_id: str
    lead: dict[str, Any] = Field(description="The lead as the execution saw it.")
    explanation: Explanation
    approvers: list[str] = Field(description="Who may decide: emails, or role:<role>.")
    status: Status
    requested_at_ms: int
    due_at_ms: int = Field(description="When the step's timeout decides, if nobody has.")
    decided_at_ms: int | None
    decided_by: ActorOut | None = Field(description="Null for a timeout or a cancellation.")
    comment: str | None
    resumed_at_ms: int | None = Field(description="When the execution went on after the decision.")


class ApprovalDetail(ApprovalOut):
    outcomes: Outcomes | None = Field(
        description="Null when the stored version can no longer be read as a workflow (an older build's)."
    )


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=2000)


class Rejection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(min_length=1, max_length=2000, description="Why: recorded on the execution's timeline.")


def approval_out(approval: Approval) -> dict[str, Any]:
    return {
        "id": approval.id,
        "project_id": approval.project_id,
        "workflow_id": approval.workflow_id,
        "workflow_version": approval.workflow_version,
        "execution_id": approval.execution_id,
        "step": approval.step,
        "lead_id": approval.lead_id,
        "lead": approval.lead,
        "explanation": Explanation(**approval.explanation),
        "approvers": approval.approvers,
        "status": approval.status,
        "requested_at_ms": required_ms(approval.requested_at),
        "due_at_ms": required_ms(approval.due_at),
        "decided_at_ms": ms(approval.decided_at),
        "decided_by": ActorOut(**approval.decided_by) if approval.decided_by else None,
        "comment": approval.comment,
        "resumed_at_ms": ms(approval.resumed_at),
    }


async def _detail(database: Db, org_id: str, approval: Approval) -> ApprovalDetail:
    """The caller's scope found the approval, which keeps the project it was opened in; its workflow
    may have moved to another project since, so its version is read in the organization (a
    project-scoped key that lists an approval can read it too)."""
    async with database.transaction() as session:
        version = await workflows.get_version(session, Scope(org_id), approval.workflow_id, approval.workflow_version)
    return ApprovalDetail(**approval_out(approval), outcomes=_outcomes(version.definition, approval))


def _outcomes(definition: dict[str, Any], approval: Approval) -> Outcomes | None:
    """What deciding does, read from the stored version (without the rules only new definitions
    meet). A version no model of this build reads any more still leaves its approval readable, and
    decidable: the orchestrator resumes on the version it holds."""
    try:
        return Outcomes(**approval_outcomes(WorkflowDefinition.model_validate(definition), approval.step))
    except (ValueError, LookupError) as exc:  # pydantic's ValidationError is a ValueError
        log.warning(
            "approval %s: step %s of %s version %d cannot be described (%s)",
            approval.id,
            approval.step,
            approval.workflow_id,
            approval.workflow_version,
            type(exc).__name__,
        )
        return None


@router.get("", response_model=Page[ApprovalOut], responses=responses(400))
async def list_approvals(
    principal: ApprovalsRead,
    database: Db,
    status: Status | None = None,
    project_id: str | None = None,
    workflow_id: str | None = None,
    assignee: Annotated[
        str | None,
        Query(description="`me` (approvals you may decide), an email, or role:<role>: approvals naming it."),
    ] = None,
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> Page[ApprovalOut]:
    """Newest first."""
    async with database.transaction() as session:
        found = await approvals.list_approvals(
            session,
            principal.scope,
            status,
            project_id,
            workflow_id,
            _assignee(principal, assignee),
            limit + 1,
            after_cursor(cursor),
        )
    return row_page(found, limit, lambda a: (a.requested_at, a.id), lambda a: ApprovalOut(**approval_out(a)))


def _assignee(principal: Principal, assignee: str | None) -> list[str] | None:
    if assignee is None:
        return None
    if assignee != "me":
        return [assignee.lower()]
    if not principal.is_person:
        raise Problem(400, "not-a-person", "`assignee=me` needs a person", "an API key decides no approvals")
    return approvals.deciders_of(principal.actor.label, principal.roles)


@router.get("/{approval_id}", response_model=ApprovalDetail, responses=responses(404))
async def get_approval(approval_id: str, principal: ApprovalsRead, database: Db) -> ApprovalDetail:
    """With what approving, rejecting and the timeout would each do."""
    async with database.transaction() as session:
        approval = await approvals.get_approval(session, principal.scope, approval_id)
    return await _detail(database, principal.org_id, approval)


@router.post("/{approval_id}/approve", response_model=ApprovalDetail, responses=responses(404, 409))
async def approve(
    approval_id: str, principal: ApprovalsDecide, database: Db, body: Decision | None = None
) -> ApprovalDetail:
    """The execution resumes on the workflow version it started with, within about a second. 403
    (`not-an-approver`) unless the step names you or one of your roles; 409 once decided (by a person,
    the timeout, or the lead's exit) or timed out, and `execution-not-held` when no orchestrator holds
    the execution any more."""
    return await _decide(database, principal, approval_id, "approved", body.comment if body else "")


@router.post("/{approval_id}/reject", response_model=ApprovalDetail, responses=responses(404, 409))
async def reject(approval_id: str, body: Rejection, principal: ApprovalsDecide, database: Db) -> ApprovalDetail:
    """The step's `on_reject` steps run and the execution ends `rejected`."""
    return await _decide(database, principal, approval_id, "rejected", body.comment)


async def _decide(database: Db, principal: Principal, approval_id: str, status: str, comment: str) -> ApprovalDetail:
    async with database.transaction() as session:
        approval = await approvals.decide(
            session, principal.scope, principal.actor, principal.roles, approval_id, status, comment
        )
    return await _detail(database, principal.org_id, approval)
