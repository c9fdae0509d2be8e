"""An event whose evaluation fails in one of its workflows is dead-lettered whole: none of the
outputs its earlier workflows made are kept beside the dead letter (real Redis for the state)."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import pytest
import redis

from drippulse.settings import Settings
from drippulse.synthetic import lead_event
from processors.compiler import CompiledWorkflow, Triggers, compile_triggers, compile_workflow
from processors.model import WorkflowDefinition
from processors.templates import LEAD_QUALIFICATION
from streams import topics
from streams.agent_calls import AgentCalls
from streams.qualifier import LeadQualifier
from streams.runtime.dlq import DeadLetters
from streams.runtime.records import ConsumedRecord
from streams.state.control_plane import ControlPlaneReader, connect
from streams.state.lead_models import LeadModels
from streams.state.processor_state import ProcessorStateStore
from streams.state.workflow_catalog import WorkflowCatalog
from tests.stack import serde_for

pytestmark = pytest.mark.stack
ORG = "org_failing_evaluation"


def _explode(*_: Any) -> None:
    raise RuntimeError("a step that fails")


class FixedCatalog(WorkflowCatalog):
    """Two workflows for one org: the first sound, the second failing at its first step."""

    def __init__(self) -> None:
        sound = compile_workflow("wf_a_sound", 1, WorkflowDefinition.model_validate(LEAD_QUALIFICATION))
        failing = replace(sound, workflow_id="wf_b_failing", steps=(_explode,))
        self.workflows: tuple[CompiledWorkflow, ...] = (sound, failing)
        self.triggers: Triggers = compile_triggers(self.workflows)

    def active_for(self, org_ids: Iterable[str]) -> dict[str, tuple[CompiledWorkflow, ...]]:
        return {org_id: self.workflows for org_id in org_ids}

    def triggers_of(self, org_id: str) -> Triggers:
        return self.triggers

    def watched_fields(self, org_id: str) -> frozenset[str]:
        return frozenset()

    def exiting(self, org_id: str) -> tuple[CompiledWorkflow, ...]:
        return ()

    def reads_model(self, org_id: str) -> bool:
        return False

    def calls_agents(self, org_id: str) -> bool:
        return False


def _qualifier(settings: Settings) -> LeadQualifier:
    def serde(topic: topics.Topic) -> tuple[Any, str]:
        return serde_for(topic, settings), topics.topic_name(topic, settings.topic_prefix)

    dead_letters = DeadLetters(*serde(topics.EVENTS_DLQ), "drippulse-qualifier")
    reader = ControlPlaneReader(connect(settings.database_url))
    return LeadQualifier(
        inbound=serde_for(topics.INBOUND_EVENTS, settings),
        executions=serde(topics.EXECUTIONS),
        crm_commands=serde(topics.CRM_COMMANDS),
        webhook_deliveries=serde(topics.WEBHOOK_DELIVERIES),
        orchestrator_inbox=serde(topics.ORCHESTRATOR_INBOX),
        dead_letters=dead_letters,
        catalog=FixedCatalog(),
        state_store=ProcessorStateStore(redis.Redis.from_url(settings.redis_url)),
        lead_models=LeadModels(connect(settings.database_url), settings.model_refresh_s),
        agent_calls=AgentCalls(serde(topics.INBOUND_EVENTS), dead_letters, reader, settings.workflow_refresh_s),
    )


def test_a_failing_workflow_dead_letters_the_whole_event(stack: Any, settings: Settings) -> None:
    event = lead_event(random.Random(1), ORG, 1)
    value = serde_for(topics.INBOUND_EVENTS, settings).encode(copy.deepcopy(event))
    record = ConsumedRecord("drip.events.inbound", 0, 0, ORG.encode(), value)

    outputs = _qualifier(settings).process([record])

    dlq = topics.topic_name(topics.EVENTS_DLQ, settings.topic_prefix)
    assert [topic for topic, _, _ in outputs] == [dlq], "the dead letter alone, not the sound workflow's outputs"
    letter = serde_for(topics.EVENTS_DLQ, settings).decode(outputs[0][2])
    assert letter["error_kind"] == "processing" and "a step that fails" in letter["error"]
