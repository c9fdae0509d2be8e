"""The limits a template sets on its own policy are checked when it is offered."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from processors.agent_templates import AgentTemplateDefinition
from processors.model import offered
from processors.templates import BUILTIN_AGENT_TEMPLATES, lead_qualification_agent


def _offer(definition: dict[str, Any]) -> AgentTemplateDefinition:
    return AgentTemplateDefinition.model_validate(definition, context=offered())


def test_every_builtin_template_is_valid_as_offered() -> None:
    for make in BUILTIN_AGENT_TEMPLATES.values():
        assert _offer(make()).workflow().steps


def test_a_policy_cannot_take_an_action_the_template_does_not_allow() -> None:
    definition = lead_qualification_agent()
    definition["actions"] = ["route", "webhook_notify", "create_task"]
    with pytest.raises(ValidationError, match="'crm_update', which 'actions' does not allow"):
        _offer(definition)


def test_an_action_needing_approval_must_follow_a_person_approving_on_every_path() -> None:
    definition = lead_qualification_agent()
    definition["approval_required"] = ["crm_update"]
    with pytest.raises(ValidationError, match="on a path no person approves"):
        _offer(definition)
    steps = definition["policy"]["steps"]
    branch = next(step for step in steps if step["type"] == "branch")
    approval = dict(branch["arms"][0]["steps"][0], on_reject=[], timeout_branch=[], on_timeout="reject")
    definition["policy"]["steps"] = [step for step in steps if step is not branch]
    definition["policy"]["steps"].insert(-2, approval)
    assert _offer(definition).approval_required == ["crm_update"]
    definition["policy"]["steps"][-3] = dict(approval, on_timeout="approve")
    with pytest.raises(ValidationError, match="on a path no person approves"):
        _offer(definition)


def test_scoring_says_what_the_policy_reads() -> None:
    definition = lead_qualification_agent()
    definition["scoring"] = "rules"
    with pytest.raises(ValidationError, match="scoring 'rules' reads no model"):
        _offer(definition)


def test_the_input_schema_must_be_a_json_schema() -> None:
    definition = lead_qualification_agent()
    definition["input_schema"] = {"type": "no-such-type"}
    with pytest.raises(ValidationError, match="not a JSON Schema"):
        _offer(definition)


def test_a_policy_without_a_trigger_runs_only_when_invoked() -> None:
    definition = lead_qualification_agent()
    del definition["policy"]["trigger"]
    trigger = _offer(definition).workflow().trigger
    assert trigger.invoked_only and not trigger.event_types and trigger.schedule is None
