"""Invoking a deployed agent: `execute` (its policy with side effects, through Kafka like every
event), `inference` (the same decision synchronously, with no side effects, and what it would do)
and `score_lead` (score, tier, owner, the learned probability and each rule's explanation).

All three check the lead against the input JSON Schema of the template version the agent runs,
refuse a paused or archived agent, and admit the call against the template's budget first (an agent
over it pauses itself: api/agent_budgets.py); a call that ran counts against the rate. The
synchronous answers carry the decision's summary from the template's provider
(api/agent_summaries.py).

`execute` is a manual run of the agent's backing workflow, so its ids are deterministic (the run,
from the org, the workflow and the `Idempotency-Key`; the event, from the run and the lead; the
execution, from the event and the workflow version) and a retry with the same key is the same
execution. `inference` and `score_lead` decide through the dry run of `POST /workflows/{id}/test`
(api/dry_run.py) with the version the agent is pinned to.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, ValidationError

from api import agent_policies, manual_runs
from api.control_plane import agents, lead_models, workflows
from api.control_plane.tables import Agent
from api.deps import AgentsInvoke, Budgets, Db, Summaries, get_executions, get_publisher, get_run_keys
from api.dry_run import Planned, decide, planned
from api.event_publisher import EventPublisher
from api.executions_reader import ExecutionsReader
from api.manual_runs import IdempotencyKey
from api.models import EventIn, ExecutionFields, ExecutionOut, LeadIn, StrictBody
from api.permissions import Principal
from api.problems import Problem, invalid, responses, validation_errors
from api.run_keys import RunKeys, fingerprint
from api.summarizer import Summary
from processors import ids
from processors.agent_inputs import UnusableSchema, input_problems
from processors.agent_templates import AgentTemplateDefinition
from processors.compiler import CompiledWorkflow
from processors.events import EventType
from processors.execution import Execution
from processors.learned_model import Weights
from processors.routing import RoutingState

router = APIRouter(prefix="/api/v1/agents", tags=["agents"], responses=responses(401, 403, 404, 409, 422))
MAX_WAIT_S = 30
SUMMARY = Field(description="The lead and the decision in a few sentences, from the template's summary provider.")


class AgentCall(StrictBody):
    lead: dict[str, Any] = Field(description="Checked against the template's `input_schema`.")


class ExecuteRequest(AgentCall):
    event_type: Literal["lead.created", "lead.updated"] = Field(
        default="lead.updated", description="The event type the execution's event carries."
    )


class AgentExecution(BaseModel):
    agent_id: str
    run_id: str
    event_id: str
    execution_id: str = Field(description="Read it at GET /executions/{execution_id}.")
    workflow_id: str = Field(description="The agent's backing workflow.")
    workflow_version: int
    template_version: int
    execution: ExecutionOut | None = Field(
        default=None, description="With `?wait`: the execution once recorded (then the answer is 200)."
    )
    summary: Summary | None = Field(default=None, description="With the recorded execution: its summary.")


class Inference(BaseModel):
    agent_id: str
    template_version: int
    workflow_version: int
    execution: ExecutionFields = Field(description="What `execute` would decide (its ids are a dry run's).")
    planned: Planned = Field(description="The CRM commands and notifications it would send.")
    trace: list[dict[str, Any]]
    summary: Summary = SUMMARY


class RuleExplanation(BaseModel):
    step: str = Field(description="The score step's path.")
    id: str
    points: int
    matched: bool
    condition: dict[str, Any] = Field(description="Each comparison, with the value it read.")


class LeadScore(BaseModel):
    agent_id: str
    template_version: int
    lead_id: str
    status: str = Field(description="filtered_out when the policy's filter drops the lead.")
    score: int
    score_breakdown: dict[str, int]
    tier: str
    owner: str = Field(description="The owner it recommends.")
    routing_reason: str
    probability: float | None = Field(description="The learned model's probability that the lead converts.")
    model_version: int | None
    rules: list[RuleExplanation]
    summary: Summary = SUMMARY


@dataclass(frozen=True)
class Invocable:
    """What deciding for an agent needs: the agent, the template version it runs (its input schema,
    its budget, its summary provider and that provider's sealed credential), its compiled policy and
    the org's learned model when the policy reads it."""

    agent: Agent
    template: AgentTemplateDefinition
    sealed_credential: str | None
    compiled: CompiledWorkflow
    model: Weights | None

    def decision(self, lead: dict[str, Any], execution: dict[str, Any]) -> dict[str, Any]:
        """What a summary reads of a decision: the execution's fields and the learned probability."""
        return {**execution, "probability": self.model.probability(lead) if self.model is not None else None}


def refuse_unless_active(agent: Agent) -> Agent:
    """The agent, if it takes calls now: a paused or archived one is 409 `agent-paused`, whichever
    way it is called (these routes, a signed inbound hook)."""
    if agent.status != "active":
        raise Problem(
            409,
            "agent-paused",
            "The agent is not active",
            agent.paused_detail or f"the agent is {agent.status}",
            status_of_agent=agent.status,
            paused_reason=agent.paused_reason,
        )
    return agent


async def _invocable(database: Db, principal: Principal, agent_id: str) -> Invocable:
    """The agent, if it may be invoked, with what deciding for it needs."""
    async with database.transaction() as session:
        agent = refuse_unless_active(await agents.get(session, principal.scope, agent_id))
        pinned = await agents.pinned_version(session, principal.scope, agent)
        version = await workflows.get_version(session, principal.scope, agent.workflow_id, agent.workflow_version)
        compiled = agent_policies.policy(agent.workflow_id, agent.workflow_version, version.definition)
        model = await lead_models.current_weights(session, principal.org_id) if compiled.uses_model else None
    return Invocable(agent, agents.template_of(pinned), pinned.summary_credential, compiled, model)


def lead_record(schema: dict[str, Any], lead: dict[str, Any], org_id: str, event_type: EventType) -> dict[str, Any]:
    """The lead as the event contract carries it, once it meets the template's input schema and the
    contract; a 422 naming each failing field (`$.lead.…`) otherwise."""
    try:
        errors = input_problems(agent_policies.validator(schema), lead)
    except UnusableSchema as exc:
        raise Problem(409, "input-schema-unusable", "The template's input schema cannot be used", str(exc)) from None
    if errors:
        raise invalid([{"field": f, "message": m} for f, m in errors.items()], "the lead is invalid")
    try:
        event = EventIn(event_type=event_type, lead=LeadIn.model_validate(lead))
    except ValidationError as exc:
        found = validation_errors(lead, exc.errors(include_url=False))
        raise invalid([{**e, "field": "$.lead" + e["field"][1:]} for e in found], "the lead is invalid") from None
    return event.to_record(org_id)


def _dry(invocable: Invocable, record: dict[str, Any]) -> Execution:
    """The decision with no side effects. Round-robin rotates from the start of each team, as in a
    workflow's test run."""
    return decide(invocable.compiled, {**record, "trigger": "manual"}, RoutingState(), invocable.model)


@router.post(
    "/{agent_id}/execute",
    status_code=202,
    response_model=AgentExecution,
    responses={
        200: {"model": AgentExecution, "description": "With `?wait`: the execution was recorded."},
        **responses(429, 503),
    },
)
async def execute(
    agent_id: str,
    body: ExecuteRequest,
    principal: AgentsInvoke,
    database: Db,
    budgets: Budgets,
    summaries: Summaries,
    publisher: Annotated[EventPublisher, Depends(get_publisher)],
    run_keys: Annotated[RunKeys, Depends(get_run_keys)],
    executions: Annotated[ExecutionsReader, Depends(get_executions)],
    response: Response,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S, description="Seconds to wait for the execution.")] = 0,
    idempotency_key: IdempotencyKey = None,
) -> AgentExecution:
    """Runs the agent's policy for the lead with its side effects, through Kafka like every event
    (the same per-org ordering, ids, history and approvals). 202 once the event is on Kafka; with
    `?wait=N`, 200 with the execution and its summary if it is recorded within N seconds (an
    approval step leaves it `awaiting_approval`), else 202. A repeated Idempotency-Key is the earlier
    run: neither admitted against the budget again nor counted."""
    invocable = await _invocable(database, principal, agent_id)
    agent = invocable.agent
    event_type = EventType(body.event_type)
    lead = lead_record(invocable.template.input_schema, body.lead, principal.org_id, event_type)["lead"]
    request = fingerprint(body.model_dump(mode="json"))
    key = idempotency_key
    answer = await manual_runs.replayed(run_keys, principal.org_id, agent.workflow_id, key, request, response)
    if answer is None:
        await budgets.admit(agent, invocable.template.budget)
        run_id = manual_runs.run_id(principal.org_id, agent.workflow_id, key)
        event_id = ids.manual_event_id(run_id, lead["lead_id"])
        accepted = AgentExecution(
            agent_id=agent.id,
            run_id=run_id,
            event_id=event_id,
            execution_id=ids.execution_id(event_id, agent.workflow_id, agent.workflow_version),
            workflow_id=agent.workflow_id,
            workflow_version=agent.workflow_version,
            template_version=agent.template_version,
        )
        answer = await manual_runs.publish(
            run_keys,
            publisher,
            response,
            principal.org_id,
            agent.workflow_id,
            key,
            request,
            accepted.model_dump(),
            lambda run: [(run["event_id"], lead)],
            event_type,
        )
        if not manual_runs.is_replay(response):
            await budgets.count(agent, invocable.template.budget)
    result = AgentExecution(**answer)
    if wait > 0:
        found = await _recorded(executions, principal.org_id, result.execution_id, wait)
        if found is not None:
            response.status_code = 200
            result.execution = ExecutionOut(**found)
            result.summary = await _summary(summaries, invocable, lead, found, result.execution_id)
    return result


async def _summary(
    summaries: Summaries, invocable: Invocable, lead: dict[str, Any], execution: dict[str, Any], execution_id: str = ""
) -> Summary:
    agent = invocable.agent
    return await summaries.summarize(
        agent.org_id,
        agent.workflow_id,
        invocable.template.summary,
        invocable.sealed_credential,
        lead,
        invocable.decision(lead, execution),
        execution_id,
    )


async def _recorded(executions: ExecutionsReader, org_id: str, execution_id: str, wait_s: float) -> Any:
    """The execution once ClickHouse has it, polled with a backoff until `wait_s` has passed."""
    deadline = time.monotonic() + wait_s
    pause = 0.05
    while True:
        found = await run_in_threadpool(executions.get, org_id, execution_id)
        left = deadline - time.monotonic()
        if found is not None or left <= 0:
            return found
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, 0.5)


async def _decided(
    database: Db, budgets: Budgets, principal: Principal, agent_id: str, body: AgentCall
) -> tuple[Invocable, dict[str, Any], Execution]:
    """inference's and score_lead's decision: the agent, the lead as an event record and the dry
    run's execution, once admitted against the budget; counted against it once it ran."""
    invocable = await _invocable(database, principal, agent_id)
    record = lead_record(invocable.template.input_schema, body.lead, principal.org_id, EventType.LEAD_UPDATED)
    record = {**record, "event_type": EventType.LEAD_UPDATED.value}
    await budgets.admit(invocable.agent, invocable.template.budget)
    execution = await run_in_threadpool(_dry, invocable, record)
    await budgets.count(invocable.agent, invocable.template.budget)
    return invocable, record, execution


@router.post("/{agent_id}/inference", response_model=Inference, responses=responses(404, 429))
async def inference(
    agent_id: str, body: AgentCall, principal: AgentsInvoke, database: Db, budgets: Budgets, summaries: Summaries
) -> Inference:
    """What `execute` would decide for the lead, synchronously and with no side effects: the
    execution (status, score, tier, owner, actions), the CRM commands and notifications it would
    send, a step-by-step trace and a summary."""
    invocable, record, execution = await _decided(database, budgets, principal, agent_id, body)
    fields = execution.as_record()
    summary = await _summary(summaries, invocable, record["lead"], fields)
    return Inference(
        agent_id=invocable.agent.id,
        template_version=invocable.agent.template_version,
        workflow_version=invocable.agent.workflow_version,
        execution=ExecutionFields(**fields),
        planned=planned(execution),
        trace=execution.trace or [],
        summary=summary,
    )


@router.post("/{agent_id}/score_lead", response_model=LeadScore, responses=responses(404, 429))
async def score_lead(
    agent_id: str, body: AgentCall, principal: AgentsInvoke, database: Db, budgets: Budgets, summaries: Summaries
) -> LeadScore:
    """The lead's score, tier and recommended owner, the learned model's probability, why each
    score rule matched or not, and a summary; synchronous, with no side effects."""
    invocable, record, execution = await _decided(database, budgets, principal, agent_id, body)
    summary = await _summary(summaries, invocable, record["lead"], execution.as_record())
    return score_out(invocable, record, execution, summary)


def score_out(invocable: Invocable, record: dict[str, Any], execution: Execution, summary: Summary) -> LeadScore:
    """The answer of `score_lead`: the decision's score, tier and owner, the learned probability,
    each score rule of the trace with its explanation, and the summary."""
    model = invocable.model
    rules = [
        RuleExplanation(
            step=entry["step"],
            id=rule["id"],
            points=rule["points"],
            matched=bool(rule["condition"]["result"]),
            condition=rule["condition"],
        )
        for entry in execution.trace or []
        if entry["type"] == "score"
        for rule in entry["rules"]
    ]
    return LeadScore(
        agent_id=invocable.agent.id,
        template_version=invocable.agent.template_version,
        lead_id=execution.lead_id,
        status=str(execution.status),
        score=execution.score,
        score_breakdown=execution.score_breakdown,
        tier=execution.tier,
        owner=execution.owner,
        routing_reason=execution.routing_reason,
        probability=model.probability(record["lead"]) if model is not None else None,
        model_version=model.version if model is not None else None,
        rules=rules,
        summary=summary,
    )
