"""The catalog of step types an API client or agent can compose, each with its schema and an example."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from processors.model import (
    AddTagAction,
    AgentStep,
    ApprovalStep,
    BranchStep,
    CreateTaskAction,
    CrmUpdateAction,
    FilterStep,
    LogAction,
    RouteStep,
    ScoreStep,
    TierStep,
    WaitStep,
    WebhookNotifyAction,
)

_CATALOG: list[tuple[str, type[BaseModel], dict[str, Any]]] = [
    (
        "filter",
        FilterStep,
        {
            "type": "filter",
            "condition": {
                "all": [
                    {"field": "lead.email", "op": "exists"},
                    {"field": "lead.country", "op": "in", "value": ["US", "CA"]},
                ]
            },
        },
    ),
    (
        "score",
        ScoreStep,
        {
            "type": "score",
            "rules": [
                {"id": "senior_title", "when": {"field": "lead.title", "op": "contains", "value": "vp"}, "points": 30},
                {
                    "id": "free_mail",
                    "when": {"field": "lead.email", "op": "ends_with", "value": "@gmail.com"},
                    "points": -20,
                },
            ],
        },
    ),
    (
        "tier",
        TierStep,
        {
            "type": "tier",
            "thresholds": [{"tier": "A", "min_score": 60}, {"tier": "B", "min_score": 30}],
            "default_tier": "C",
        },
    ),
    (
        "route",
        RouteStep,
        {
            "type": "route",
            "rules": [
                {
                    "id": "emea",
                    "when": {"field": "lead.country", "op": "in", "value": ["DE", "FR"]},
                    "team": ["dana@acme.test", "erik@acme.test"],
                },
                {
                    "id": "strategic",
                    "when": {"field": "lead.employees", "op": "gte", "value": 5000},
                    "owner": "sam@acme.test",
                },
            ],
            "team": ["alice@acme.test", "bob@acme.test"],
            "fallback_owner": "unassigned",
        },
    ),
    (
        "action.crm_update",
        CrmUpdateAction,
        {"type": "action", "action": "crm_update", "properties": {"lifecycle_stage": "lead"}},
    ),
    (
        "action.webhook_notify",
        WebhookNotifyAction,
        {"type": "action", "action": "webhook_notify", "event_type": "lead.qualified"},
    ),
    ("action.add_tag", AddTagAction, {"type": "action", "action": "add_tag", "tag": "hot-lead"}),
    (
        "action.create_task",
        CreateTaskAction,
        {"type": "action", "action": "create_task", "title": "Call within 24 h", "due_in_days": 1},
    ),
    ("action.log", LogAction, {"type": "action", "action": "log", "message": "routed by the EMEA rule"}),
    (
        "branch",
        BranchStep,
        {
            "type": "branch",
            "arms": [
                {
                    "when": {"field": "tier", "op": "eq", "value": "A"},
                    "steps": [{"type": "action", "action": "create_task", "title": "Call today", "due_in_days": 0}],
                },
                {
                    "when": {"not": {"field": "lead.email", "op": "is_email_domain", "value": "free_mail"}},
                    "steps": [{"type": "action", "action": "add_tag", "tag": "business-email"}],
                },
            ],
            "otherwise": [{"type": "action", "action": "log", "message": "no arm matched"}],
        },
    ),
    (
        "approval",
        ApprovalStep,
        {
            "type": "approval",
            "approvers": ["role:approver", "head-of-sales@acme.test"],
            "timeout_hours": 48,
            "on_timeout": "branch",
            "timeout_branch": [{"type": "action", "action": "create_task", "title": "Chase it", "due_in_days": 0}],
            "on_reject": [{"type": "action", "action": "add_tag", "tag": "rejected-by-sales"}],
        },
    ),
    ("wait", WaitStep, {"type": "wait", "until_field": "lead.attributes.demo_date", "offset_hours": -24}),
    ("agent", AgentStep, {"type": "agent", "agent_id": "agt_5f0c2a9d81e4b7c36a10", "event_type": "lead.updated"}),
]


def step_types() -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "description": (model.__doc__ or "").strip(),
            "config_schema": _inline_root(model.model_json_schema()),
            "example": example,
        }
        for name, model, example in _CATALOG
    ]


def _inline_root(schema: dict[str, Any]) -> dict[str, Any]:
    """Recursive models (branch) come out as a bare `$ref`; clients expect the object at the root."""
    if "$ref" not in schema:
        return schema
    name = schema["$ref"].rsplit("/", 1)[-1]
    return {**schema["$defs"][name], "$defs": schema["$defs"]}


def step_models() -> dict[str, tuple[type[BaseModel], dict[str, Any]]]:
    return {name: (model, example) for name, model, example in _CATALOG}
