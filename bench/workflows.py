"""The benchmark's workload: 10 active workflows per org, each the full Lead Qualification graph.

One qualifies every lead; nine are narrower campaigns behind their own enrollment condition, as
an org's real workflow list looks, so a lead enrolls in about 1.5 workflows on average (the run
reports the exact figure as outputs per event).
"""

from __future__ import annotations

import copy
from typing import Any

from processors.templates import LEAD_QUALIFICATION


def _both(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {"all": [a, b]}


SEGMENTS: list[dict[str, Any] | None] = [
    None,
    _both(
        {"field": "lead.lead_source", "op": "eq", "value": "demo_request"},
        {"field": "lead.employees", "op": "gte", "value": 800},
    ),
    _both(
        {"field": "lead.lead_source", "op": "eq", "value": "webinar"},
        {"field": "lead.country", "op": "eq", "value": "US"},
    ),
    _both(
        {"field": "lead.country", "op": "in", "value": ["GB", "DE", "FR", "NL"]},
        {"field": "lead.employees", "op": "gte", "value": 2500},
    ),
    _both(
        {"field": "lead.industry", "op": "eq", "value": "software"},
        {"field": "lead.title", "op": "contains", "value": "vp"},
    ),
    _both(
        {"field": "lead.industry", "op": "eq", "value": "fintech"}, {"field": "lead.country", "op": "eq", "value": "US"}
    ),
    _both(
        {"field": "lead.lead_source", "op": "eq", "value": "referral"},
        {"field": "lead.country", "op": "neq", "value": "US"},
    ),
    _both(
        {"field": "lead.attributes.utm_campaign", "op": "eq", "value": "retarget"},
        {"field": "lead.employees", "op": "lt", "value": 100},
    ),
    _both(
        {"field": "lead.email", "op": "ends_with", "value": "@acme.io"},
        {"field": "lead.title", "op": "contains", "value": "founder"},
    ),
    _both(
        {"field": "lead.country", "op": "eq", "value": "JP"}, {"field": "lead.lead_source", "op": "eq", "value": "ads"}
    ),
]


def workflow_definitions() -> list[dict[str, Any]]:
    definitions = []
    for segment in SEGMENTS:
        definition = copy.deepcopy(LEAD_QUALIFICATION)
        if segment is not None:
            definition["trigger"]["condition"] = segment
        definitions.append(definition)
    return definitions


def agent_workflow() -> dict[str, Any]:
    """What a deployed Lead Qualification Agent runs, invoked only: every org of the benchmark has one
    beside its ten workflows, and `agent_execute_events_per_s` invokes it (docs/agents.md)."""
    from processors.agent_templates import AgentTemplateDefinition
    from processors.templates import lead_qualification_agent

    template = lead_qualification_agent()
    del template["policy"]["trigger"]
    return AgentTemplateDefinition.model_validate(template).workflow().model_dump(mode="json")
