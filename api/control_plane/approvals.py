"""Approvals: listing them and taking a person's decision, exactly once.

The orchestrator opens an approval when an execution reaches an approval step, and resumes the
execution once it finds the decision here. A decision is a conditional update of a `pending` row,
locked first, so two deciders (or a decider and the step's timeout, which the orchestrator takes
the same way, and so does an exit of the lead) can never both win: the second gets 409. Who may
decide is the step's to say: the people it names by email (compared lower-case, as logins are) and
the members holding a role it names (`role:approver` by default).

A decision is taken only while the orchestrator holds the execution at the approval's step
(`held_executions`, written in the same transaction as the approval was opened; an execution has an
approval per approval step): a pending approval whose execution is held nowhere (lost with an
earlier build's in-memory broker) answers 409 `execution-not-held` instead of a decision nothing
would act on.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from api.control_plane import audit
from api.control_plane.actors import Actor, Scope
from api.control_plane.rows import newest_first, one, scoped
from api.control_plane.tables import Approval
from api.permissions import Role
from api.problems import Problem


def deciders_of(email: str, roles: frozenset[Role]) -> list[str]:
    """The approver entries that name this person: their email and each of their roles."""
    return [email.lower(), *(f"role:{role.value}" for role in roles)]


async def list_approvals(
    session: AsyncSession,
    scope: Scope,
    status: str | None,
    project_id: str | None,
    workflow_id: str | None,
    assignee: list[str] | None,
    limit: int,
    after: tuple[datetime, str] | None = None,
) -> list[Approval]:
    """Newest first; `assignee` keeps the approvals naming any of these entries; `after` is the
    (requested_at, id) of the previous page's last row."""
    query = scoped(
        Approval,
        scope,
        (Approval.project_id, project_id),
        (Approval.workflow_id, workflow_id),
        (Approval.status, status),
    )
    if assignee is not None:
        query = query.where(Approval.approvers.overlap(assignee))
    return await newest_first(session, query, Approval.requested_at, Approval.id, limit, after)


async def get_approval(session: AsyncSession, scope: Scope, approval_id: str, lock: bool = False) -> Approval:
    return await one(session, Approval, "approval", scope.org_id, approval_id, scope.project_id, lock)


async def decide(
    session: AsyncSession,
    scope: Scope,
    actor: Actor,
    roles: frozenset[Role],
    approval_id: str,
    status: str,
    comment: str,
) -> Approval:
    if not actor.is_person:
        raise Problem(403, "forbidden", "Not allowed", "a decision is a person's act (a login session), not a key's")
    approval = await get_approval(session, scope, approval_id, lock=True)
    names = set(deciders_of(actor.label, roles))
    if not names.intersection(approver.lower() for approver in approval.approvers):
        raise Problem(
            403,
            "not-an-approver",
            "Not an approver of this step",
            "this approval is decided by " + ", ".join(approval.approvers),
            approvers=approval.approvers,
        )
    if approval.status != "pending":
        raise Problem(
            409,
            "already-decided",
            "Already decided",
            f"this approval is {approval.status}; a decision is taken once",
            approval_status=approval.status,
        )
    if approval.due_at <= datetime.now(UTC):
        raise Problem(
            409,
            "timed-out",
            "The approval timed out",
            "its timeout passed; the step's fallback decides it",
            approval_status=approval.status,
        )
    held = await session.scalar(
        text("SELECT 1 FROM held_executions WHERE execution_id = :id AND step = :step"),
        {"id": approval.execution_id, "step": approval.step},
    )
    if held is None:
        raise Problem(
            409,
            "execution-not-held",
            "The execution is not held",
            "no orchestrator holds this approval's execution any more, so a decision would resume nothing",
            approval_status=approval.status,
        )
    approval.status, approval.decided_by, approval.comment = status, actor.as_json(), comment
    approval.decided_at = await session.scalar(select(func.now()))
    audit.record(
        session,
        scope.org_id,
        actor,
        f"approval.{'approve' if status == 'approved' else 'reject'}",
        ("approval", approval.id),
        {"status": "pending"},
        {"status": status, "comment": comment},
        project_id=approval.project_id,
    )
    return approval
