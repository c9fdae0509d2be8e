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
