"""Deployed agents: one template version running in a project as a backing workflow.

Deploying creates a workflow of kind 'agent' whose version 1 is the template version's policy
(`AgentTemplateDefinition.workflow()`), and activates it, so the qualifier, the orchestrator, the
CRM and webhook fan-out and the execution history treat it as any workflow: an agent's executions
are its backing workflow's. Nothing else changes that workflow (`workflows.changeable` refuses it
outside this module). Pausing deactivates it, so triggered events stop too; resuming reactivates
the version the agent is pinned to; upgrading adds a version from another template version and
activates it (or, when a person must approve, leaves it to the change request). Every act is audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api import agent_policies
from api.control_plane import agent_templates, audit, workflows
from api.control_plane.actors import Actor, Scope, system
from api.control_plane.ids import new_id
from api.control_plane.rows import newest_first, one, scoped
from api.control_plane.tables import Agent, AgentTemplateVersion, IntegrationConnection, WebhookSubscription
from api.problems import Problem, invalid
from processors.agent_templates import AgentTemplateDefinition

AGENT = "agent"
"""The kind of an agent's backing workflow."""
PAUSED_BY_PERSON = "paused_by_person"
OVER_BUDGET = "over_budget"
TEMPLATE_ARCHIVED = "template_archived"
BUDGET = system("budget")
"""Who pauses an agent over its budget: no person decided it."""


def template_of(version: AgentTemplateVersion) -> AgentTemplateDefinition:
    """A stored version read back (without the offered-only rules, like a stored workflow)."""
    return agent_policies.template(version.definition)


def backing_definition(version: AgentTemplateVersion) -> dict[str, Any]:
    """What the backing workflow's version holds for this template version."""
    return template_of(version).workflow().model_dump(mode="json", exclude_none=True)


async def get(session: AsyncSession, scope: Scope, agent_id: str, lock: bool = False) -> Agent:
    return await one(session, Agent, "agent", scope.org_id, agent_id, scope.project_id, lock)


async def pinned_version(session: AsyncSession, scope: Scope, agent: Agent) -> AgentTemplateVersion:
    """The template version the agent runs (read in the agent's org, whichever scope asks)."""
    return await agent_templates.get_version(session, Scope(scope.org_id), agent.template_id, agent.template_version)


async def list_agents(
    session: AsyncSession,
    scope: Scope,
    filters: Sequence[tuple[Any, object | None]],
    limit: int,
    after: tuple[datetime, str] | None,
) -> list[Agent]:
    return await newest_first(session, scoped(Agent, scope, *filters), Agent.created_at, Agent.id, limit, after)


async def _deployable(
    session: AsyncSession, scope: Scope, template_id: str, number: int | None
) -> AgentTemplateVersion:
    template = await agent_templates.get(session, scope, template_id)
    number = number or template.active_version
    if number is None:
        raise Problem(409, "not-deployable", "No active version", "activate a version of the template first")
    version = await agent_templates.get_version(session, scope, template_id, number)
    if version.status not in agent_templates.DEPLOYABLE:
        raise Problem(
            409,
            "not-deployable",
            "Version not deployable",
            f"version {number} is {version.status}; agents run activated versions that are not archived",
        )
    return version


async def _bound(session: AsyncSession, org_id: str, connection_ids: list[str], webhook_ids: list[str]) -> None:
    """Every binding names a connection or subscription of this org; a 422 naming each that does not."""
    errors = []
    for field, table, ids in (
        ("connection_ids", IntegrationConnection, connection_ids),
        ("webhook_ids", WebhookSubscription, webhook_ids),
    ):
        columns: Any = table
        found = set(
            (await session.scalars(select(columns.id).where(columns.org_id == org_id, columns.id.in_(ids)))).all()
        )
        errors += [
            {"field": f"$.{field}[{index}]", "message": f"no {table.__tablename__} row {value!r} in this organization"}
            for index, value in enumerate(ids)
            if value not in found
        ]
    if errors:
        raise invalid(errors, "an agent is bound only to its organization's connections and webhook subscriptions")


async def deploy(
    session: AsyncSession,
    scope: Scope,
    actor: Actor,
    name: str,
    template_id: str,
    template_version: int | None,
    connection_ids: list[str],
    webhook_ids: list[str],
) -> Agent:
    """In the template's project, running `template_version` (default: the active one)."""
    version = await _deployable(session, scope, template_id, template_version)
    await _bound(session, scope.org_id, connection_ids, webhook_ids)
    template = await agent_templates.get(session, scope, template_id)
    workflow, _ = await workflows.create_workflow(
        session,
        scope,
        actor,
        template.project_id,
        f"agent: {name}",
        f"The backing workflow of an agent deployed from {template_id}@{version.version}.",
        backing_definition(version),
        kind=AGENT,
    )
    await workflows.activate(session, scope, actor, workflow.id, 1, kind=AGENT)
    agent = Agent(
        id=new_id("agt"),
        org_id=scope.org_id,
        project_id=template.project_id,
        name=name,
        template_id=template_id,
        template_version=version.version,
        workflow_id=workflow.id,
        workflow_version=1,
        status="active",
        connection_ids=connection_ids,
        webhook_ids=webhook_ids,
        created_by=actor.as_json(),
    )
    session.add(agent)
    await session.flush()
    await session.refresh(agent)
    audit.record(
        session,
        scope.org_id,
        actor,
        "agent.deploy",
        ("agent", agent.id),
        after=audit.snapshot(agent),
        project_id=agent.project_id,
    )
    return agent


async def _changeable(session: AsyncSession, scope: Scope, agent_id: str) -> Agent:
    agent = await get(session, scope, agent_id, lock=True)
    if agent.status == "archived":
        raise Problem(409, "archived", "Agent archived", "an archived agent can be read, not changed")
    return agent


async def update(session: AsyncSession, scope: Scope, actor: Actor, agent_id: str, changes: dict[str, Any]) -> Agent:
    """Name and bindings."""
    agent = await _changeable(session, scope, agent_id)
    await _bound(session, scope.org_id, changes.get("connection_ids", []), changes.get("webhook_ids", []))
    return await _changed(session, scope, actor, agent, "agent.update", changes)


async def _changed(
    session: AsyncSession, scope: Scope, actor: Actor, agent: Agent, action: str, changes: dict[str, Any]
) -> Agent:
    before = audit.snapshot(agent)
    for field, value in changes.items():
        setattr(agent, field, value)
    agent.updated_at = func.now()
    await session.flush()
    await session.refresh(agent)
    audit.record(
        session,
        agent.org_id,
        actor,
        action,
        ("agent", agent.id),
        before,
        audit.snapshot(agent),
        project_id=agent.project_id,
    )
    return agent


async def pause(session: AsyncSession, scope: Scope, actor: Actor, agent_id: str, reason: str, detail: str) -> Agent:
    """Stops its backing workflow (triggered events too) and refuses invocations until resumed."""
    agent = await _changeable(session, scope, agent_id)
    if agent.status == "paused":
        raise Problem(
            409, "agent-paused", "Already paused", agent.paused_detail or "", paused_reason=agent.paused_reason
        )
    return await _paused(session, actor, agent, reason, detail)


async def _paused(session: AsyncSession, actor: Actor, agent: Agent, reason: str, detail: str) -> Agent:
    await workflows.deactivate(session, Scope(agent.org_id), actor, agent.workflow_id, kind=AGENT)
    return await _changed(
        session,
        Scope(agent.org_id),
        actor,
        agent,
        "agent.pause",
        {"status": "paused", "paused_reason": reason, "paused_detail": detail},
    )


async def pause_over_budget(session: AsyncSession, org_id: str, agent_id: str, reason: str) -> Agent | None:
    """Pauses the agent for its budget, as the system; None when it is no longer active: calls over
    the same budget at the same moment wait for one another on the agent's row, so the first pauses
    it and the others find it paused (one pause, one audit entry, one `agent.paused` event)."""
    agent = await get(session, Scope(org_id), agent_id, lock=True)
    if agent.status != "active":
        return None
    return await _paused(session, BUDGET, agent, OVER_BUDGET, reason)


async def pause_running(session: AsyncSession, org_id: str, template_id: str, number: int, actor: Actor) -> list[Agent]:
    """Pauses every active agent running this template version (it was archived)."""
    query = select(Agent).where(
        Agent.org_id == org_id,
        Agent.template_id == template_id,
        Agent.template_version == number,
        Agent.status == "active",
    )
    paused = []
    for agent in (await session.scalars(query.with_for_update())).all():
        detail = f"its template version {template_id}@{number} was archived; upgrade it to another version"
        paused.append(await _paused(session, actor, agent, TEMPLATE_ARCHIVED, detail))
    return paused


async def resume(session: AsyncSession, scope: Scope, actor: Actor, agent_id: str) -> Agent:
    """Reactivates the version it is pinned to; an agent whose template version was archived is
    upgraded instead (resuming it would run a version taken out of service), and one its budget
    paused is resumed by a person only."""
    agent = await _changeable(session, scope, agent_id)
    if agent.status != "paused":
        raise Problem(409, "not-paused", "Not paused", "the agent is active")
    if agent.paused_reason == OVER_BUDGET and not actor.is_person:
        raise Problem(
            403,
            "person-required",
            "A person must resume this agent",
            "its budget paused it; resuming it is a person's act (a login session), never a key's, so an agent "
            "cannot lift its own limit",
        )
    version = await pinned_version(session, scope, agent)
    if version.status not in agent_templates.DEPLOYABLE:
        raise Problem(
            409,
            "not-deployable",
            "Its template version is out of service",
            f"version {version.version} is {version.status}; upgrade the agent to another version",
        )
    await workflows.activate(session, Scope(agent.org_id), actor, agent.workflow_id, agent.workflow_version, kind=AGENT)
    return await _changed(
        session, scope, actor, agent, "agent.resume", {"status": "active", "paused_reason": None, "paused_detail": None}
    )


async def prepare_upgrade(
    session: AsyncSession, scope: Scope, actor: Actor, agent_id: str, template_version: int
) -> tuple[Agent, int]:
    """A new draft version of the backing workflow from `template_version`: (agent, its number).
    Applying it (`apply_upgrade`) or proposing it (a change request) is the caller's choice."""
    agent = await _changeable(session, scope, agent_id)
    if template_version == agent.template_version:
        raise Problem(409, "already-running", "Already running it", f"the agent runs version {template_version}")
    version = await _deployable(session, Scope(agent.org_id), agent.template_id, template_version)
    workflow = await workflows.update_workflow(
        session, Scope(agent.org_id), actor, agent.workflow_id, {}, backing_definition(version), kind=AGENT
    )
    return agent, workflow.latest_version


async def apply_upgrade(
    session: AsyncSession,
    actor: Actor,
    agent_id: str,
    org_id: str,
    template_version: int,
    workflow_version: int,
    change_request_id: str | None = None,
) -> Agent:
    """Pins the agent to the new version; an active agent runs it from now on, a paused one once
    resumed. The version is frozen either way: a later upgrade adds a version instead of editing
    the one the agent is pinned to."""
    agent = await _changeable(session, Scope(org_id), agent_id)
    if agent.status == "active":
        await workflows.activate(
            session, Scope(org_id), actor, agent.workflow_id, workflow_version, change_request_id, kind=AGENT
        )
    else:
        pinned = await workflows.get_version(session, Scope(org_id), agent.workflow_id, workflow_version, lock=True)
        pinned.status = "superseded"
    return await _changed(
        session,
        Scope(org_id),
        actor,
        agent,
        "agent.upgrade",
        {"template_version": template_version, "workflow_version": workflow_version},
    )


async def archive(session: AsyncSession, scope: Scope, actor: Actor, agent_id: str) -> Agent:
    """Stops it for good; its executions stay readable under its backing workflow's id."""
    agent = await _changeable(session, scope, agent_id)
    await workflows.deactivate(session, Scope(agent.org_id), actor, agent.workflow_id, status="archived", kind=AGENT)
    return await _changed(session, scope, actor, agent, "agent.archive", {"status": "archived"})
