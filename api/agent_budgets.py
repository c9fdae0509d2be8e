"""An agent's budget at its invocations: checked before each call, counted after it. An agent over
it pauses itself: the system pauses it (audited, reason `over_budget`), one `agent.paused` webhook
event goes out, and the call is refused with `agent-over-budget` (429 for the rate, which retrying
at once cannot help either, 409 for the day's cost). A person resumes it (`agents.resume`).

Every pause, a person's, a budget's or an archived template version's, is announced the same way,
so a subscriber to `agent.paused` hears of each."""

from __future__ import annotations

import redis.asyncio as aioredis

from api.budget_usage import TodaysCost, check_budget, record_invocation
from api.control_plane import agents
from api.control_plane.database import Database
from api.control_plane.tables import Agent
from api.models import required_ms
from api.org_webhook_events import publish_org_webhook_event
from api.problems import Problem
from processors.agent_templates import Budget
from processors.budgets import Overrun
from streams.delivery.webhook_schedule import DeliverySchedule

PAUSED_EVENT = "agent.paused"


async def announce_paused(database: Database, schedule: DeliverySchedule, agent: Agent) -> None:
    """Queues `agent.paused` for the org's subscribed endpoints, once the pause has committed. The
    message id names the pause (the agent and when), so announcing it again queues nothing new."""
    paused_at_ms = required_ms(agent.updated_at)
    data = {
        "agent_id": agent.id,
        "name": agent.name,
        "project_id": agent.project_id,
        "template_id": agent.template_id,
        "template_version": agent.template_version,
        "workflow_id": agent.workflow_id,
        "paused_reason": agent.paused_reason,
        "paused_detail": agent.paused_detail,
        "paused_at_ms": paused_at_ms,
    }
    message_id = f"msg_{PAUSED_EVENT}_{agent.id}_{paused_at_ms}"
    await publish_org_webhook_event(database, schedule, agent.org_id, PAUSED_EVENT, data, message_id)


def over_budget_problem(overrun: Overrun) -> Problem:
    return Problem(
        429 if overrun.limit == "executions_per_minute" else 409,
        "agent-over-budget",
        "The agent is over its budget",
        f"{overrun.reason}; the agent is paused until a person resumes it",
        limit=overrun.limit,
        paused_reason=agents.OVER_BUDGET,
    )


class AgentBudgets:
    """One per API process (`app.state.agent_budgets`), holding the cache of today's costs."""

    def __init__(self, database: Database, redis: aioredis.Redis, schedule: DeliverySchedule, costs: TodaysCost):
        self._database = database
        self._redis = redis
        self._schedule = schedule
        self._costs = costs

    async def admit(self, agent: Agent, budget: Budget) -> None:
        """Returns when one more invocation stays within the budget; otherwise pauses the agent (the
        first of concurrent callers does, and announces it) and raises `agent-over-budget`."""
        overrun = await check_budget(self._redis, self._costs, agent.org_id, agent.workflow_id, budget)
        if overrun is None:
            return
        async with self._database.transaction() as session:
            paused = await agents.pause_over_budget(session, agent.org_id, agent.id, overrun.reason)
        if paused is not None:
            await announce_paused(self._database, self._schedule, paused)
        raise over_budget_problem(overrun)

    async def count(self, agent: Agent, budget: Budget) -> None:
        """Counts an invocation that was admitted and ran, where the budget limits the rate (the
        count is read for nothing else, so an agent without a rate limit costs no round trip)."""
        if budget.executions_per_minute is not None:
            await record_invocation(self._redis, agent.org_id, agent.workflow_id)
