"""The benchmark's workload: 10 realistic workflows per org, each the full Lead Qualification graph
behind its own enrollment trigger, so an event enrolls in a few workflows, not all ten."""

from __future__ import annotations

import copy
from typing import Any

from processors.templates import LEAD_QUALIFICATION

SEGMENTS: list[dict[str, Any] | None] = [
    None,
    {"field": "lead.lead_source", "op": "eq", "value": "demo_request"},
    {"field": "lead.lead_source", "op": "eq", "value": "webinar"},
    {"all": [{"field": "lead.country", "op": "in", "value": ["GB", "DE", "FR", "NL"]},
             {"field": "lead.employees", "op": "gte", "value": 200}]},
    {"all": [{"field": "lead.country", "op": "eq", "value": "US"}, {"field": "lead.employees", "op": "gte", "value": 800}]},
    {"all": [{"field": "lead.industry", "op": "eq", "value": "software"}, {"field": "lead.title", "op": "contains", "value": "vp"}]},
    {"field": "lead.industry", "op": "in", "value": ["fintech", "healthcare"]},
    {"all": [{"field": "lead.lead_source", "op": "eq", "value": "referral"}, {"field": "lead.country", "op": "neq", "value": "US"}]},
    {"field": "lead.attributes.utm_campaign", "op": "eq", "value": "retarget"},
    {"all": [{"field": "lead.email", "op": "ends_with", "value": "@acme.io"}, {"field": "lead.employees", "op": "lt", "value": 100}]},
]


def workflow_definitions() -> list[dict[str, Any]]:
    definitions = []
    for segment in SEGMENTS:
        definition = copy.deepcopy(LEAD_QUALIFICATION)
        if segment is not None:
            definition["trigger"]["condition"] = segment
        definitions.append(definition)
    return definitions
