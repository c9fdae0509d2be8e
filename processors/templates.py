"""The flagship Lead Qualification workflow, shared by the demo, the docs and the tests."""

from __future__ import annotations

from typing import Any

EMEA_COUNTRIES = ["DE", "FR", "GB", "NL", "ES", "IT", "SE"]
ACCOUNT_EXECUTIVES = ["alice@acme.test", "bob@acme.test", "carol@acme.test"]
EMEA_TEAM = ["dana@acme.test", "erik@acme.test"]
NURTURE_QUEUE = "nurture-queue"

LEAD_QUALIFICATION: dict[str, Any] = {
    "trigger": {
        "event_types": ["lead.created", "lead.updated"],
        "reenrollment": {"enabled": True, "event_types": ["lead.updated"]},
    },
    "steps": [
        {
            "type": "filter",
            "condition": {
                "all": [
                    {"field": "lead.email", "op": "exists"},
                    {"field": "lead.email", "op": "not_contains", "value": "@example."},
                ]
            },
        },
        {
            "type": "score",
            "rules": [
                {
                    "id": "senior_title",
                    "when": {
                        "any": [
                            {"field": "lead.title", "op": "contains", "value": "vp"},
                            {"field": "lead.title", "op": "contains", "value": "director"},
                            {"field": "lead.title", "op": "contains", "value": "head of"},
                        ]
                    },
                    "points": 30,
                },
                {"id": "mid_market", "when": {"field": "lead.employees", "op": "gte", "value": 200}, "points": 20},
                {
                    "id": "target_industry",
                    "when": {"field": "lead.industry", "op": "in", "value": ["software", "fintech", "healthcare"]},
                    "points": 15,
                },
                {
                    "id": "demo_request",
                    "when": {"field": "lead.lead_source", "op": "eq", "value": "demo_request"},
                    "points": 25,
                },
                {
                    "id": "free_mail",
                    "when": {
                        "any": [
                            {"field": "lead.email", "op": "ends_with", "value": "@gmail.com"},
                            {"field": "lead.email", "op": "ends_with", "value": "@yahoo.com"},
                        ]
                    },
                    "points": -20,
                },
            ],
        },
        {
            "type": "tier",
            "thresholds": [{"tier": "A", "min_score": 60}, {"tier": "B", "min_score": 30}],
            "default_tier": "C",
        },
        {
            "type": "route",
            "rules": [
                {"id": "nurture", "when": {"field": "tier", "op": "eq", "value": "C"}, "owner": NURTURE_QUEUE},
                {
                    "id": "emea",
                    "when": {"field": "lead.country", "op": "in", "value": EMEA_COUNTRIES},
                    "team": EMEA_TEAM,
                },
            ],
            "team": ACCOUNT_EXECUTIVES,
            "fallback_owner": NURTURE_QUEUE,
        },
        {"type": "action", "action": "crm_update", "properties": {"lifecycle_stage": "lead"}},
        {"type": "action", "action": "webhook_notify", "event_type": "lead.qualified"},
    ],
}


def lead_qualification_with_approval(
    timeout_hours: float = 48, approvers: list[str] | None = None, properties: dict[str, str] | None = None
) -> dict[str, Any]:
    """Lead Qualification where a tier A lead waits for a person with the Approver role before the
    CRM update and the notification. Rejected: tagged, and nothing else. Nobody decides within
    `timeout_hours`: tagged and a task to chase it is created instead."""
    filter_, score, tier, route, crm_update, notify = LEAD_QUALIFICATION["steps"]
    approval = {
        "type": "approval",
        "approvers": approvers or ["role:approver"],
        "timeout_hours": timeout_hours,
        "on_timeout": "branch",
        "timeout_branch": [
            {"type": "action", "action": "add_tag", "tag": "approval-timed-out"},
            {"type": "action", "action": "create_task", "title": "Tier A lead: approval timed out", "due_in_days": 0},
        ],
        "on_reject": [{"type": "action", "action": "add_tag", "tag": "rejected-by-sales"}],
    }
    return {
        "trigger": LEAD_QUALIFICATION["trigger"],
        "steps": [
            filter_,
            score,
            tier,
            route,
            {"type": "branch", "arms": [{"when": {"field": "tier", "op": "eq", "value": "A"}, "steps": [approval]}]},
            {**crm_update, "properties": properties or crm_update["properties"]},
            notify,
        ],
    }


LEAD_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["lead_id", "email"],
    "properties": {
        "lead_id": {"type": "string", "minLength": 1, "maxLength": 200},
        "email": {"type": "string", "format": "email", "maxLength": 320},
        "first_name": {"type": ["string", "null"], "maxLength": 200},
        "last_name": {"type": ["string", "null"], "maxLength": 200},
        "company": {"type": ["string", "null"], "maxLength": 300},
        "title": {"type": ["string", "null"], "maxLength": 300},
        "country": {"type": ["string", "null"], "pattern": "^[A-Z]{2}$"},
        "industry": {"type": ["string", "null"], "maxLength": 100},
        "employees": {"type": ["integer", "null"], "minimum": 0},
        "annual_revenue": {"type": ["number", "null"], "minimum": 0},
        "lead_source": {"type": ["string", "null"], "maxLength": 100},
        "attributes": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
"""A lead as the event contract carries it (schemas/avro/inbound_event.avsc, `Lead`)."""

LIKELY_TO_CONVERT = {
    "id": "likely_to_convert",
    "when": {"field": "model.probability", "op": "gte", "value": 0.5},
    "points": 20,
}
"""The learned model's say in the agent's score: nothing until the org has a model."""


def lead_qualification_agent() -> dict[str, Any]:
    """The built-in Lead Qualification Agent: the flagship workflow's scoring (rules and the learned
    model), tier, owner recommendation, a person's approval for tier A, then the CRM update and the
    notification. Triggered by new and updated leads like the workflow, and invocable."""
    policy = lead_qualification_with_approval()
    filter_, score, *rest = policy["steps"]
    return {
        "name": "Lead Qualification Agent",
        "purpose": "Score and tier each inbound lead, recommend its owner, hold tier A leads for an Approver, "
        "then update the CRM and notify subscribers.",
        "input_schema": LEAD_INPUT_SCHEMA,
        "policy": {**policy, "steps": [filter_, {**score, "rules": [*score["rules"], LIKELY_TO_CONVERT]}, *rest]},
        "scoring": "both",
        "actions": ["crm_update", "webhook_notify", "route", "create_task"],
        "approval_required": [],
        "summary": {"kind": "builtin"},
        "budget": {"executions_per_minute": None, "cost_per_day": None},
    }


BUILTIN_AGENT_TEMPLATES: dict[str, Any] = {"lead-qualification": lead_qualification_agent}
"""Built-in agent templates by key: what `GET /api/v1/agent_templates` offers to copy into a project."""
