"""Change requests: activations that a project's policy (or an agent key) sends to an Approver.

Three kinds share one four-eyes mechanism: `workflow.activate` (a workflow version),
`agent_template.activate` (an agent template version) and `agent.upgrade` (a deployed agent moving
to another template version: the new version of its backing workflow). Opening one freezes the
proposed version (status `proposed`), so the reviewer approves exactly what will run; edits made
meanwhile become a new draft. One request per workflow (or template) is open at a time.
Approval activates the version in the same transaction as the decision; rejection and cancellation
return the version to `draft`. A decision is taken once: the row is locked and must still be open.
Everything that changes a workflow locks its workflow row first, then its versions, then its change
request, so deciding, editing and activating the same workflow never deadlock.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from api.control_plane import agent_templates, agents, audit, workflows
from api.control_plane.actors import Actor, Scope
from api.control_plane.agent_targets import refuse_foreign_agents
from api.control_plane.ids import new_id
from api.control_plane.rows import newest_first, one, scoped
from api.control_plane.tables import (
    Agent,
    AgentTemplate,
    AgentTemplateVersion,
    ChangeRequest,
    Workflow,
    WorkflowVersion,
)
from api.problems import Problem
from processors.change_control import decision_refusal, definition_diff, request_refusal

ACTIVATE = "workflow.activate"
TEMPLATE_ACTIVATE = "agent_template.activate"
UPGRADE = "agent.upgrade"
Version = WorkflowVersion | AgentTemplateVersion


async def open_activation(
    session: AsyncSession, scope: Scope, actor: Actor, workflow: Workflow, number: int, reason: str
) -> ChangeRequest:
    target = await workflows.get_version(session, scope, workflow.id, number, lock=True)
    if number == workflow.active_version:
        raise Problem(409, "already-active", "Already active", f"version {number} is the active version")
    _someone_asks(actor, target)
    await refuse_foreign_agents(session, scope.org_id, workflow.project_id, target.definition, number)
    await workflows.refuse_while_a_request_is_open(session, workflow.id, "asking again")
    base = None
    if workflow.active_version is not None:
        base = await workflows.get_version(session, scope, workflow.id, workflow.active_version)
    request = _opened(scope, actor, workflow.project_id, ACTIVATE, target, base, reason, workflow_id=workflow.id)
    return await _recorded(session, scope, actor, request)


async def open_template_activation(
    session: AsyncSession, scope: Scope, actor: Actor, template: AgentTemplate, number: int, reason: str
) -> ChangeRequest:
    target = await agent_templates.get_version(session, scope, template.id, number, lock=True)
    if target.status not in ("draft", "proposed"):
        raise Problem(409, "not-a-draft", "Not a draft", f"version {number} is {target.status}")
    _someone_asks(actor, target)
    await agent_templates.refuse_while_a_request_is_open(session, template.id)
    base = None
    if template.active_version is not None:
        base = await agent_templates.get_version(session, scope, template.id, template.active_version)
    request = _opened(
        scope, actor, template.project_id, TEMPLATE_ACTIVATE, target, base, reason, agent_template_id=template.id
    )
    return await _recorded(session, scope, actor, request)


async def open_upgrade(
    session: AsyncSession,
    scope: Scope,
    actor: Actor,
    agent: Agent,
    workflow_version: int,
    template_version: int,
    reason: str,
) -> ChangeRequest:
    """The diff a reviewer reads is the backing workflow's: the policy the agent would run instead."""
    org = Scope(scope.org_id)
    target = await workflows.get_version(session, org, agent.workflow_id, workflow_version, lock=True)
    _someone_asks(actor, target)
    await workflows.refuse_while_a_request_is_open(session, agent.workflow_id, "asking again")
    base = await workflows.get_version(session, org, agent.workflow_id, agent.workflow_version)
    request = _opened(
        scope,
        actor,
        agent.project_id,
        UPGRADE,
        target,
        base,
        reason,
        workflow_id=agent.workflow_id,
        agent_template_id=agent.template_id,
        agent_id=agent.id,
        template_version=template_version,
    )
    return await _recorded(session, scope, actor, request)


def _someone_asks(actor: Actor, target: Version) -> None:
    nobody = request_refusal((actor.user_id, target.authored_by_user_id))
    if nobody is not None:
        raise Problem(403, "person-required", "A person must ask for this change", nobody)


def _opened(
    scope: Scope,
    actor: Actor,
    project_id: str,
    kind: str,
    target: Version,
    base: Version | None,
    reason: str,
    **subject: str | int,
) -> ChangeRequest:
    """The request for `target` (frozen from now on) against `base`, the version it would replace."""
    diff = definition_diff(base.definition if base else {}, target.definition)
    if target.status == "draft":
        target.status = "proposed"
    return ChangeRequest(
        id=new_id("cr"),
        org_id=scope.org_id,
        project_id=project_id,
        kind=kind,
        version=target.version,
        base_version=base.version if base else None,
        diff=[change.as_json() for change in diff],
        reason=reason,
        status="open",
        requested_by=actor.as_json(),
        **subject,
    )


async def _recorded(session: AsyncSession, scope: Scope, actor: Actor, request: ChangeRequest) -> ChangeRequest:
    session.add(request)
    await session.flush()
    await session.refresh(request)
    subject = {
        name: getattr(request, name)
        for name in ("workflow_id", "agent_template_id", "agent_id", "template_version")
        if getattr(request, name) is not None
    }
    audit.record(
        session,
        scope.org_id,
        actor,
        "change_request.create",
        ("change_request", request.id),
        after={"kind": request.kind, **subject, "version": request.version, "reason": request.reason},
        project_id=request.project_id,
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


async def _locked_open(session: AsyncSession, scope: Scope, request_id: str) -> tuple[ChangeRequest, Version]:
    """The open request and its proposed version, locked in the one order every change of a workflow
    (or template) takes (it, then its versions, then its change request), so a decision and an edit
    or activation of the same one queue behind each other instead of deadlocking. A request never
    changes subject, so reading which one unlocked is safe; whether it is still open is read locked."""
    request = await get_request(session, scope, request_id)
    org = Scope(scope.org_id)
    version: Version
    if request.agent_id is not None:
        await agents.get(session, org, request.agent_id, lock=True)  # an agent's changes lock it first
    if request.workflow_id is not None:
        await workflows.get_workflow(session, org, request.workflow_id, lock=True)
        version = await workflows.get_version(session, org, request.workflow_id, request.version, lock=True)
    else:
        template_id = str(request.agent_template_id)
        await agent_templates.get(session, org, template_id, lock=True)
        version = await agent_templates.get_version(session, org, template_id, request.version, lock=True)
    await session.refresh(request, with_for_update=True)
    if request.status != "open":
        raise Problem(
            409,
            "already-decided",
            "Already decided",
            f"this change request is {request.status}; a decision is taken once",
        )
    return request, version


def _four_eyes(actor: Actor, request: ChangeRequest, version: Version) -> None:
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
    await _apply(session, scope, actor, request)
    return request


async def _apply(session: AsyncSession, scope: Scope, actor: Actor, request: ChangeRequest) -> None:
    """Does what an approved request asked for, in the decision's transaction."""
    org = Scope(scope.org_id)
    if request.kind == TEMPLATE_ACTIVATE:
        await agent_templates.activate(session, org, actor, str(request.agent_template_id), request.version, request.id)
    elif request.kind == UPGRADE and request.agent_id is not None and request.template_version is not None:
        await agents.apply_upgrade(
            session, actor, request.agent_id, scope.org_id, request.template_version, request.version, request.id
        )
    else:
        await workflows.activate(session, org, actor, str(request.workflow_id), request.version, request.id)


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
