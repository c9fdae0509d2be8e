"""A signed inbound delivery to a source that names an agent: a call of that agent, checked as
`POST /agents/{id}/execute` checks one, and published as execute publishes it (a manual run of the
agent's backing workflow, which no other workflow of the org evaluates).

What the sender hears decides what it does next (Standard Webhooks senders retry anything but a
2xx, and stop for good on 410):
- the agent archived: 410, the source can never deliver again;
- the agent paused: 409 `agent-paused`, with why; the sender retries, and a retry after the agent
  is resumed calls it;
- an event that is not a lead's: 422, as any source's payload that is not an event;
- a lead the agent's input schema refuses: 202 with the event under `rejected`, naming each field.
  Retrying could not change the answer, so the event is kept on drip.events.dlq instead (error
  kind `validation`, the call itself as the letter's bytes): nothing is lost, and
  `drippulse dlq replay` calls the agent with it once its template accepts such leads.

A delivery is one call whatever happens to its retries: its event id is the source's and the
sender's `webhook-id`, claimed in the dedup window like every client event id, and the agent's
execution id derives from it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from api import agent_policies
from api.agent_budgets import AgentBudgets
from api.control_plane import agents
from api.control_plane.actors import Scope
from api.control_plane.tables import InboundSource
from api.deps import Db
from api.event_dedup import EventIdDedup
from api.event_publisher import EventPublisher
from api.models import EventIn, EventsAccepted
from api.problems import Problem, invalid
from api.routes.agent_calls import refuse_unless_active
from api.routes.events import accept_events
from api.routes.inbound_sources import AGENT_CALL_TYPES
from processors.agent_inputs import UnusableSchema, input_problems


class RejectedCall(BaseModel):
    event_id: str
    reason: str
    errors: list[dict[str, str]] = Field(description="Each field of the lead the agent's input schema refuses.")


class HookAccepted(EventsAccepted):
    rejected: list[RejectedCall] = Field(
        default_factory=list,
        description="A source that calls an agent: events whose lead the agent's input schema refuses. Each is kept "
        "on the dead-letter topic (an operator replays it once the template accepts it); sending it again changes "
        "nothing.",
    )


async def call_agent(
    database: Db,
    source: InboundSource,
    event: EventIn,
    lead: Any,
    dedup: EventIdDedup,
    publisher: EventPublisher,
    budgets: AgentBudgets,
) -> HookAccepted:
    """`event`: the delivery as an event (valid by the event contract); `lead`: its lead as the
    sender sent it, which the input schema reads, as execute's does."""
    assert source.agent_id is not None
    async with database.transaction() as session:
        agent = await agents.get(session, Scope(source.org_id), source.agent_id)
        if agent.status == "archived":
            raise Problem(
                410,
                "agent-archived",
                "The agent is archived",
                f"this source calls agent {agent.id}, which is archived for good; its events can never be taken",
                agent_id=agent.id,
            )
        refuse_unless_active(agent)
        template = agents.template_of(await agents.pinned_version(session, Scope(source.org_id), agent))
    if event.event_type not in AGENT_CALL_TYPES:
        allowed = " or ".join(AGENT_CALL_TYPES)
        raise invalid([{"field": "$.event_type", "message": f"an agent is called with {allowed} events"}])
    try:
        problems = input_problems(agent_policies.validator(template.input_schema), lead)
    except UnusableSchema as exc:
        raise Problem(409, "input-schema-unusable", "The template's input schema cannot be used", str(exc)) from None
    if not problems:
        assert event.event_id is not None
        if not await dedup.seen(source.org_id, event.event_id):
            await budgets.admit(agent, template.budget)
        accepted = await accept_events(source.org_id, [event], dedup, publisher, run_of=agent.workflow_id)
        if accepted.accepted:
            await budgets.count(agent, template.budget)
        return HookAccepted(**accepted.model_dump())
    reason = "the lead does not meet the agent's input schema at " + ", ".join(problems)
    refusal = ("validation", f"inbound source {source.id} calling agent {agent.id}: {reason}")
    kept = await accept_events(source.org_id, [event], dedup, publisher, run_of=agent.workflow_id, refusal=refusal)
    assert event.event_id is not None
    errors = [{"field": field, "message": message} for field, message in problems.items()]
    return HookAccepted(
        **kept.model_dump(), rejected=[RejectedCall(event_id=event.event_id, reason=reason, errors=errors)]
    )
