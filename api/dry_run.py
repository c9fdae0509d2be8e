"""A decision without side effects: the exact engine the qualifier runs, with nothing produced or
recorded, and what the execution would have sent. `POST /workflows/{id}/test` and an agent's
`inference` and `score_lead` all decide through here, so none of them can drift from the others."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from processors.compiler import CompiledWorkflow
from processors.execution import Execution
from processors.learned_model import Weights, model_context
from processors.routing import RoutingState


class PlannedCrmCommand(BaseModel):
    step: str
    operation: str
    properties: dict[str, str]


class PlannedNotification(BaseModel):
    step: str
    event_type: str
    payload: dict[str, Any]


class PlannedAgentCall(BaseModel):
    step: str
    agent_id: str
    event_type: str
    event_id: str = Field(description="The event the agent would be called with.")


class Planned(BaseModel):
    crm_commands: list[PlannedCrmCommand]
    webhook_notifications: list[PlannedNotification]
    agent_calls: list[PlannedAgentCall] = Field(description="Agents its `agent` steps would call.")


def decide(
    compiled: CompiledWorkflow, record: dict[str, Any], routing: RoutingState, model: Weights | None
) -> Execution:
    """`record`: an inbound event record whose `event_type` is the dotted name. `model`: the org's
    current learned model for a workflow that reads it, as the qualifier has it. Round-robin
    rotates from the start of each team in `routing`."""
    scored = model_context(model, record["lead"]) if model is not None else None
    return compiled.evaluate(record, routing, trace=True, model=scored)


def planned(execution: Execution) -> Planned:
    """What the execution would send: its CRM commands, webhook notifications and agent calls."""
    return Planned(
        crm_commands=[
            PlannedCrmCommand(step=c.step, operation=c.operation, properties=c.properties)
            for c in execution.crm_commands
        ],
        webhook_notifications=[
            PlannedNotification(step=n.step, event_type=n.event_type, payload=n.payload)
            for n in execution.notifications
        ],
        agent_calls=[
            PlannedAgentCall(step=c.step, agent_id=c.agent_id, event_type=c.event_type, event_id=c.event_id)
            for c in execution.agent_calls
        ],
    )
