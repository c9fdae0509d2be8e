"""Sending the calls of deployed agents that `agent` steps planned.

A call is what `POST /agents/{id}/execute` publishes: an inbound event that only the agent's backing
workflow evaluates (trigger MANUAL, `workflow_id` set), carrying the lead, on drip.events.inbound. Its
event id derives from the calling execution and the step, so a replayed batch or a resumed execution
sends the same event, and everything the agent does for it collapses downstream. Fire and forget:
the calling workflow has gone on already.

A call is checked as the API checks one it is sent: an agent that is paused or archived, a lead its
input schema refuses, an agent the organization does not have, is not called. That call is
dead-lettered instead with the reason (error kinds `agent_paused`, `validation`), the event it would
have been as the letter's bytes, so nothing is lost: `drippulse dlq replay` sends it once the cause
is fixed (the agent resumed, the template upgraded).

The org's agents are read from the control plane (`RevisionCache`: checked against the org's
revision, never a query per event). The qualifier loads those of a batch's orgs before it evaluates
(`load`), so a control plane that is down rewinds the batch rather than failing one event;
the orchestrator reads them as it resumes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

from processors.agent_inputs import UnusableSchema, as_sent, input_problems, input_validator
from processors.events import EventType
from processors.execution import AgentCall, Execution
from streams.runtime.dlq import DeadLetters
from streams.runtime.records import OutputRecord
from streams.runtime.serde import AvroSerde
from streams.state.control_plane import ControlPlaneReader, RevisionCache

PAUSED = "agent_paused"
"""The error kind of a call its agent refused because it was not active."""
INVALID = "validation"
"""The error kind of a call the agent's input schema refused (or of an agent that is not there)."""


@dataclass(frozen=True)
class AgentTarget:
    """What calling one agent needs: where its calls go, whether it takes them, what it accepts."""

    workflow_id: str
    status: str
    paused_reason: str | None
    validator: Draft202012Validator


Agents = Mapping[str, AgentTarget]
"""An org's agents by id."""


def _targets(rows: Iterable[dict[str, Any]]) -> dict[str, AgentTarget]:
    return {
        row["id"]: AgentTarget(
            row["workflow_id"], row["status"], row["paused_reason"], input_validator(row["input_schema"] or {})
        )
        for row in rows
    }


class AgentCalls:
    def __init__(
        self, inbound: tuple[AvroSerde, str], dead_letters: DeadLetters, reader: ControlPlaneReader, refresh_s: float
    ) -> None:
        self._inbound, self._topic = inbound
        self._dead_letters = dead_letters
        self._agents: RevisionCache[dict[str, AgentTarget]] = RevisionCache(
            reader, lambda org_ids: {org: _targets(rows) for org, rows in reader.agents(org_ids).items()}, refresh_s
        )
        self._loaded: dict[str, dict[str, AgentTarget]] = {}

    def load(self, org_ids: Iterable[str]) -> None:
        """The agents of these orgs, as `emit` will read them until the next `load`: once per batch,
        before evaluating it."""
        org_ids = list(org_ids)
        self._loaded = self._agents.get(org_ids) if org_ids else {}

    def emit(self, execution: Execution, at_ms: int, outputs: list[OutputRecord]) -> None:
        """The execution's calls (or their dead letters), stamped `at_ms`: when this phase ran."""
        org_id = execution.org_id
        agents = self._loaded.get(org_id)
        if agents is None:
            agents = self._agents.get([org_id])[org_id]
        key = org_id.encode()
        for call in execution.agent_calls:
            target = agents.get(call.agent_id)
            record = _record(execution, call, target.workflow_id if target is not None else None, at_ms)
            value = self._inbound.encode(record)
            refusal = _refusal(target, call.lead)
            if refusal is None:
                outputs.append((self._topic, key, value))
            else:
                kind, reason = refusal
                where = f"agent step {call.step} of execution {execution.execution_id} (agent {call.agent_id})"
                # An event with no agent to go to would reach every workflow of the org if replayed.
                letter = value if target is not None else None
                outputs.append(self._dead_letters.refused(self._topic, key, letter, kind, f"{where}: {reason}"))


def _record(execution: Execution, call: AgentCall, workflow_id: str | None, at_ms: int) -> dict[str, Any]:
    return {
        "event_id": call.event_id,
        "org_id": execution.org_id,
        "event_type": EventType(call.event_type).avro_symbol,
        "occurred_at_ms": at_ms,
        "source": f"workflow:{execution.workflow_id}",
        "lead": call.lead,
        "crm_object": None,
        "previous": None,
        "trigger": "MANUAL",
        "workflow_id": workflow_id,
    }


def _refusal(target: AgentTarget | None, lead: dict[str, Any]) -> tuple[str, str] | None:
    """(error kind, reason) when the agent would refuse the call; None when it takes it. A reason
    names the lead's failing fields, never their values: it is logged."""
    if target is None:
        return INVALID, "the organization has no such agent"
    if target.status != "active":
        return PAUSED, f"the agent is {target.status}" + (f" ({target.paused_reason})" if target.paused_reason else "")
    try:
        problems = input_problems(target.validator, as_sent(lead))
    except UnusableSchema as exc:
        return INVALID, f"its input schema cannot be used: {exc}"
    if problems:
        return INVALID, "the lead does not meet the agent's input schema at " + ", ".join(problems)
    return None
