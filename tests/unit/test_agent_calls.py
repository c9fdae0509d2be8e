"""How the workers send the calls `agent` steps plan: a call the agent takes becomes a run of its
backing workflow on the inbound topic; one it would refuse (paused, a lead its input schema refuses,
an agent the org does not have) is dead-lettered with the reason and, where it has a target, the
call itself, so nothing is lost. No I/O: the control plane is a fake."""

from __future__ import annotations

from typing import Any

from processors.compiler import compile_workflow
from processors.execution import Execution
from processors.model import WorkflowDefinition
from processors.routing import RoutingState
from processors.templates import LEAD_INPUT_SCHEMA
from streams import topics
from streams.agent_calls import AgentCalls
from streams.runtime.dlq import DeadLetters
from streams.runtime.records import OutputRecord
from streams.runtime.schema_registry import EmbeddedRegistry
from streams.runtime.serde import AvroSerde

REGISTRY = EmbeddedRegistry()
INBOUND = AvroSerde(topics.INBOUND_EVENTS, topics.INBOUND_EVENTS.base_name, REGISTRY)
LETTERS = AvroSerde(topics.EVENTS_DLQ, topics.EVENTS_DLQ.base_name, REGISTRY)
AT_MS = 1_800_000_000_000


class Agents:
    """The control plane as `AgentCalls` reads it: each org's agents, and a revision per org."""

    def __init__(self, **deployed: dict[str, Any]) -> None:
        self.deployed = deployed
        self.queries = 0

    def revisions(self, org_ids: list[str]) -> dict[str, int]:
        self.queries += 1
        return dict.fromkeys(org_ids, 1)

    def agents(self, org_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        self.queries += 1
        return {
            org_id: [
                {"id": agent_id, "input_schema": LEAD_INPUT_SCHEMA, "paused_reason": None, **fields}
                for agent_id, fields in self.deployed.items()
            ]
            if org_id == "org_1"
            else []
            for org_id in org_ids
        }


def _calls(reader: Any) -> AgentCalls:
    dead_letters = DeadLetters(LETTERS, topics.EVENTS_DLQ.base_name, "drippulse-qualifier")
    return AgentCalls((INBOUND, topics.INBOUND_EVENTS.base_name), dead_letters, reader, refresh_s=60)


def _calling(org_id: str = "org_1", **lead: Any) -> Execution:
    definition = WorkflowDefinition.model_validate(
        {"trigger": {"event_types": ["lead.created"]}, "steps": [{"type": "agent", "agent_id": "agt_1"}]}
    )
    event = {
        "event_id": "e1",
        "org_id": org_id,
        "event_type": "lead.created",
        "occurred_at_ms": 1,
        "lead": {"lead_id": "l-1", "email": "ada@initech.net", "title": None, "attributes": {}, **lead},
    }
    return compile_workflow("wf_caller", 1, definition).evaluate(event, RoutingState())


def _emitted(calls: AgentCalls, execution: Execution) -> list[OutputRecord]:
    outputs: list[OutputRecord] = []
    calls.emit(execution, AT_MS, outputs)
    return outputs


def test_a_call_the_agent_takes_is_a_run_of_its_backing_workflow_as_execute_publishes_it() -> None:
    execution = _calling()
    ((topic, key, value),) = _emitted(_calls(Agents(agt_1={"workflow_id": "wf_agent", "status": "active"})), execution)
    assert (topic, key) == (topics.INBOUND_EVENTS.base_name, b"org_1")
    event = INBOUND.decode(value)
    assert {k: event[k] for k in ("event_id", "org_id", "trigger", "workflow_id", "occurred_at_ms", "source")} == {
        "event_id": execution.agent_calls[0].event_id,
        "org_id": "org_1",
        "trigger": "MANUAL",
        "workflow_id": "wf_agent",
        "occurred_at_ms": AT_MS,
        "source": "workflow:wf_caller",
    }
    assert event["event_type"] == "LEAD_UPDATED" and event["lead"]["email"] == "ada@initech.net"


def _letter(outputs: list[OutputRecord]) -> dict[str, Any]:
    ((topic, key, value),) = outputs
    assert (topic, key) == (topics.EVENTS_DLQ.base_name, b"org_1")
    return LETTERS.decode(value)


def test_a_call_of_a_paused_agent_is_dead_lettered_with_the_call_so_a_replay_sends_it_once_resumed() -> None:
    reader = Agents(agt_1={"workflow_id": "wf_agent", "status": "paused", "paused_reason": "over_budget"})
    letter = _letter(_emitted(_calls(reader), _calling()))
    assert letter["error_kind"] == "agent_paused" and "is paused (over_budget)" in letter["error"]
    assert letter["source_topic"] == topics.INBOUND_EVENTS.base_name and letter["source_offset"] == -1
    replayed = INBOUND.decode(letter["original_value"])
    assert replayed["workflow_id"] == "wf_agent" and replayed["trigger"] == "MANUAL", "replayed, it calls the agent"


def test_a_lead_the_agents_input_schema_refuses_is_dead_lettered_naming_fields_not_values() -> None:
    reader = Agents(agt_1={"workflow_id": "wf_agent", "status": "active"})
    letter = _letter(_emitted(_calls(reader), _calling(email=None, country="germany")))
    assert letter["error_kind"] == "validation"
    assert letter["error"].endswith("the lead does not meet the agent's input schema at $.lead.country, $.lead.email")
    assert "germany" not in letter["error"], "a reason is logged: it names fields, never a lead's values"
    assert INBOUND.decode(letter["original_value"])["lead"]["country"] == "germany", "the call itself is kept"


def test_a_call_of_an_agent_the_org_does_not_have_is_a_letter_that_replays_nothing() -> None:
    """Another org's agent is as unknown as a missing one; its event, with no workflow to go to,
    would reach every workflow of the org if it were replayed, so the letter holds none."""
    reader = Agents(agt_1={"workflow_id": "wf_agent", "status": "active"})
    outputs = _emitted(_calls(reader), _calling(org_id="org_2"))
    ((_, key, value),) = outputs
    letter = LETTERS.decode(value)
    assert key == b"org_2" and letter["error_kind"] == "validation" and letter["original_value"] is None
    assert "the organization has no such agent" in letter["error"]


def test_agents_loaded_for_a_batch_are_read_without_a_query_per_call() -> None:
    reader = Agents(agt_1={"workflow_id": "wf_agent", "status": "active"})
    calls = _calls(reader)
    calls.load(["org_1"])
    loaded = reader.queries
    for _ in range(3):
        assert len(_emitted(calls, _calling())) == 1
    assert reader.queries == loaded
