"""What an agent accepts: a lead is checked against its template's input schema, then the event
contract, and every failing field is named; a template definition is held to every bound a workflow
offered directly is held to."""

from __future__ import annotations

from typing import Any

import pytest

from api.definitions import template_definition
from api.problems import Problem
from api.routes.agent_calls import lead_record
from processors.events import EventType
from processors.templates import LEAD_INPUT_SCHEMA, lead_qualification_agent


def _fields(lead: dict[str, Any], schema: dict[str, Any] = LEAD_INPUT_SCHEMA) -> set[str]:
    with pytest.raises(Problem) as refused:
        lead_record(schema, lead, "org_1", EventType.LEAD_UPDATED)
    assert refused.value.status == 422
    return {error["field"] for error in refused.value.extra["errors"]}


def test_each_field_failing_the_input_schema_is_named() -> None:
    assert _fields({"lead_id": "l-1", "country": "germany", "employees": -1}) == {
        "$.lead.email",
        "$.lead.country",
        "$.lead.employees",
    }
    assert _fields({"lead_id": "l-1", "email": "not an email"}) == {"$.lead.email"}
    assert _fields({"lead_id": "l-1", "email": "a@b.io", "attributes": {"plan": 3}}) == {"$.lead.attributes.plan"}


def test_a_lead_the_schema_allows_but_the_event_contract_does_not_is_named_too() -> None:
    loose = {"type": "object"}
    assert _fields({"lead_id": "l-1", "shoe_size": 44}, loose) == {"$.lead.shoe_size"}


def test_a_valid_lead_becomes_the_lead_of_an_event_record() -> None:
    record = lead_record(
        LEAD_INPUT_SCHEMA, {"lead_id": "l-1", "email": "ada@initech.net"}, "org_1", EventType.LEAD_UPDATED
    )
    assert record["lead"]["lead_id"] == "l-1" and record["org_id"] == "org_1"


def test_the_built_in_template_is_a_valid_offered_definition_and_a_bad_policy_is_named() -> None:
    assert template_definition(lead_qualification_agent(), 300)["name"] == "Lead Qualification Agent"
    scheduled = lead_qualification_agent()
    scheduled["policy"]["trigger"] = {
        "schedule": {"cron": "* * * * *"},
        "segment": {"field": "lead.email", "op": "exists"},
    }
    with pytest.raises(Problem) as refused:
        template_definition(scheduled, 300)
    assert any(e["field"].startswith("$.definition.policy.trigger") for e in refused.value.extra["errors"])


def test_an_input_schema_referring_to_what_cannot_be_resolved_is_a_problem_not_a_crash() -> None:
    schema = {"type": "object", "properties": {"lead_id": {"$ref": "https://schemas.example/lead.json"}}}
    with pytest.raises(Problem) as refused:
        lead_record(schema, {"lead_id": "l-1"}, "org_1", EventType.LEAD_UPDATED)
    assert refused.value.kind == "input-schema-unusable"
