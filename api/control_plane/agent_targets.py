"""Agents other resources call: an inbound source whose events go to an agent, a workflow's agent
step. Such a reference is checked when it is stored (a source) or put to work (a workflow version
activated, or moved with its workflow), in the caller's organization and project, so a reference
never reaches another tenant's agent."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.control_plane.tables import Agent
from api.problems import invalid
from processors.model import WorkflowDefinition, agent_steps


async def callable_agent(
    session: AsyncSession, org_id: str, project_id: str | None, agent_id: str
) -> tuple[Agent | None, str]:
    """(the agent, "") when it is one of the org's (of `project_id` when given) and not archived;
    (None, why not) otherwise, in words that never tell another org's agent from a missing one."""
    query = select(Agent).where(Agent.org_id == org_id, Agent.id == agent_id)
    if project_id is not None:
        query = query.where(Agent.project_id == project_id)
    agent = await session.scalar(query)
    where = "this project" if project_id is not None else "this organization"
    if agent is None:
        return None, f"no agent {agent_id!r} in {where}"
    if agent.status == "archived":
        return None, f"agent {agent_id!r} is archived"
    return agent, ""


async def refuse_foreign_agents(
    session: AsyncSession, org_id: str, project_id: str, definition: dict[str, Any], version: int
) -> None:
    """422 naming each `agent` step of the version whose agent is not a deployed agent of the
    project (`$.definition.steps[…].agent_id`): a workflow calls the agents of its own project."""
    errors = []
    for path, step in agent_steps(WorkflowDefinition.model_validate(definition).steps):
        _, problem = await callable_agent(session, org_id, project_id, step.agent_id)
        if problem:
            errors.append({"field": "$.definition" + path.removeprefix("$"), "message": problem})
    if errors:
        raise invalid(errors, f"version {version} calls agents this project does not have")
