"""Change requests: activations that a project's policy (or an agent key) sends to an Approver.

Opening one freezes the proposed version (status `proposed`), so the reviewer approves exactly what
will run; edits made meanwhile become a new draft. One request per workflow is open at a time.
Approval activates the version in the same transaction as the decision; rejection and cancellation
return the version to `draft`. A decision is taken once: the row is locked and must still be open.
Everything that changes a workflow locks its workflow row first, then its versions, then its change
request, so deciding, editing and activating the same workflow never deadlock.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from api.control_plane import audit, workflows
from api.control_plane.actors import Actor, Scope
from api.control_plane.ids import new_id
from api.control_plane.rows import newest_first, one, scoped
from api.control_plane.tables import ChangeRequest, Workflow, WorkflowVersion
from api.problems import Problem
from processors.change_control import decision_refusal, definition_diff, request_refusal

ACTIVATE = "workflow.activate"


async def open_activation(
    session: AsyncSession, scope: Scope, actor: Actor, workflow: Workflow, number: int, reason: str
) -> ChangeRequest:
    target = await workflows.get_version(session, scope, workflow.id, number, lock=True)
    if number == workflow.active_version:
        raise Problem(409, "already-active", "Already active", f"version {number} is the active version")
    nobody = request_refusal((actor.user_id, target.authored_by_user_id))
    if nobody is not None:
        raise Problem(403, "person-required", "A person must ask for this change", nobody)
    await workflows.refuse_while_a_request_is_open(session, workflow.id, "asking again")
    base = None
    if workflow.active_version is not None:
        base = await workflows.get_version(session, scope, workflow.id, workflow.active_version)
    diff = definition_diff(base.definition if base else {}, target.definition)
    if target.status == "draft":
        target.status = "proposed"
    request = ChangeRequest(
        id=new_id("cr"),
        org_id=scope.org_id,
        project_id=workflow.project_id,
        workflow_id=workflow.id,
        kind=ACTIVATE,
        version=number,
        base_version=workflow.active_version,
        diff=[change.as_json() for change in diff],
        reason=reason,
        status="open",
        requested_by=actor.as_json(),
    )
    session.add(request)
    await session.flush()
    await session.refresh(request)
    audit.record(
        session,
        scope.org_id,
        actor,
        "change_request.create",
        ("change_request", request.id),
        after={"kind": ACTIVATE, "workflow_id": workflow.id, "version": number, "reason": reason},
        project_id=workflow.project_id,
    )
    return request


async def list_requests(
    session: AsyncSession,
    scope: Scope,
    status: str | None,
    project_id: str | None,
    workflow_id: str | None,
    limit: int,
    after: tuple[datetime, str] | None = None,
) -> list[ChangeRequest]:
    """Newest first; `after` is the (created_at, id) of the previous page's last row."""
    query = scoped(
        ChangeRequest,
        scope,
        (ChangeRequest.project_id, project_id),
        (ChangeRequest.workflow_id, workflow_id),
        (ChangeRequest.status, status),
    )
    return await newest_first(session, query, ChangeRequest.created_at, ChangeRequest.id, limit, after)


async def get_request(session: AsyncSession, scope: Scope, request_id: str, lock: bool = False) -> ChangeRequest:
    return await one(session, ChangeRequest, "change request", scope.org_id, request_id, scope.project_id, lock)


async def _locked_open(session: AsyncSession, scope: Scope, request_id: str) -> tuple[ChangeRequest, WorkflowVersion]:
    """The open request and its proposed version, locked in the one order every change of a workflow
    takes (its workflow, then its versions, then its change request), so a decision and an edit or
    activation of the same workflow queue behind each other instead of deadlocking. A request never
    changes workflow, so reading which one unlocked is safe; whether it is still open is read locked."""
    request = await get_request(session, scope, request_id)
    await workflows.get_workflow(session, Scope(scope.org_id), request.workflow_id, lock=True)
    version = await workflows.get_version(session, Scope(scope.org_id), request.workflow_id, request.version, lock=True)
    await session.refresh(request, with_for_update=True)
    if request.status != "open":
        raise Problem(
            409,
            "already-decided",
            "Already decided",
            f"this change request is {request.status}; a decision is taken once",
        )
    return request, version


def _four_eyes(actor: Actor, request: ChangeRequest, version: WorkflowVersion) -> None:
    """Compares people: the decider's own session against the people behind the request and the
    version, whether they acted in a session or through a key they issued."""
    requester = Actor.from_json(request.requested_by)
    refusal = decision_refusal(
        actor.user_id if actor.is_person else None, (requester.user_id, version.authored_by_user_id)
    )
    if refusal is not None:
        raise Problem(403, "four-eyes", "Another person must decide", refusal)


def _decided(request: ChangeRequest, actor: Actor, status: str, comment: str | None) -> None:
    request.status, request.decided_by, request.decided_at = status, actor.as_json(), datetime.now(UTC)
    request.decision_comment = comment


async def approve(
    session: AsyncSession, scope: Scope, actor: Actor, request_id: str, comment: str | None
) -> ChangeRequest:
    request, version = await _locked_open(session, scope, request_id)
    _four_eyes(actor, request, version)
    _decided(request, actor, "approved", comment)
    audit.record(
        session,
        scope.org_id,
        actor,
        "change_request.approve",
        ("change_request", request.id),
        {"status": "open"},
        {"status": "approved", "comment": comment},
        project_id=request.project_id,
    )
    await workflows.activate(session, Scope(scope.org_id), actor, request.workflow_id, request.version, request.id)
    return request


async def close(
    session: AsyncSession, scope: Scope, actor: Actor, request_id: str, status: str, comment: str | None
) -> ChangeRequest:
    """Rejects (an Approver, not the requester) or cancels (the requester or an admin) a request;
    the proposed version becomes an editable draft again."""
    request, version = await _locked_open(session, scope, request_id)
    if status == "rejected":
        _four_eyes(actor, request, version)
    if version.status == "proposed":
        version.status = "draft"
    _decided(request, actor, status, comment)
    action = "change_request.reject" if status == "rejected" else "change_request.cancel"
    audit.record(
        session,
        scope.org_id,
        actor,
        action,
        ("change_request", request.id),
        {"status": "open"},
        {"status": status, "comment": comment},
        project_id=request.project_id,
    )
    return request
