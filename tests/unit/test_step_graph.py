from __future__ import annotations

from typing import Any

from processors import ids
from processors.compiler import compile_workflow
from processors.events import EventType
from processors.model import WorkflowDefinition
from processors.routing import RoutingState

TRIGGER = {"event_types": ["lead.created"]}


def run(steps: list[dict[str, Any]], trace: bool = False, **lead: Any) -> Any:
    workflow = compile_workflow("wf", 1, WorkflowDefinition.model_validate({"trigger": TRIGGER, "steps": steps}))
    event = {
        "event_id": "e1",
        "org_id": "o",
        "event_type": EventType.LEAD_CREATED.value,
        "occurred_at_ms": 1,
        "lead": {"lead_id": "l1", "email": "ada@acme.io", **lead},
    }
    return workflow.evaluate(event, RoutingState(), trace=trace)


SCORE = {
    "type": "score",
    "floor": 0,
    "ceiling": 50,
    "rules": [
        {"id": "big", "when": {"field": "lead.employees", "op": "gte", "value": 1000}, "points": 80},
        {"id": "tiny", "when": {"field": "lead.employees", "op": "lt", "value": 10}, "points": -30},
    ],
}


def test_score_is_clamped_to_floor_and_ceiling() -> None:
    assert run([SCORE], employees=5000).score == 50
    assert run([SCORE], employees=3).score == 0
    assert run([SCORE], employees=3).score_breakdown == {"tiny": -30}


def test_branch_takes_the_first_matching_arm_else_otherwise() -> None:
    branch = {
        "type": "branch",
        "arms": [
            {
                "when": {"field": "lead.country", "op": "eq", "value": "DE"},
                "steps": [{"type": "action", "action": "add_tag", "tag": "emea"}],
            },
            {
                "when": {"field": "lead.country", "op": "in", "value": ["DE", "US"]},
                "steps": [
                    {"type": "action", "action": "add_tag", "tag": "core-market"},
                    {"type": "action", "action": "create_task", "title": "Call"},
                ],
            },
        ],
        "otherwise": [{"type": "action", "action": "log", "message": "elsewhere"}],
    }
    steps = [
        {"type": "route", "team": [], "fallback_owner": "queue"},
        branch,
        {"type": "action", "action": "crm_update"},
    ]
    de, us, br = run(steps, country="DE"), run(steps, country="US"), run(steps, country="BR")
    assert [(c.operation, c.properties.get("tag")) for c in de.crm_commands] == [
        ("add_tag", "emea"),
        ("update_lead", None),
    ]
    assert [c.operation for c in us.crm_commands] == ["add_tag", "create_task", "update_lead"]
    assert us.crm_commands[1].properties["assignee"] == "queue"
    assert br.logs == ["elsewhere"] and [c.operation for c in br.crm_commands] == ["update_lead"]
    paths = [c.step for c in us.crm_commands]
    assert paths == ["1.1.0", "1.1.1", "2"]
    assert len({ids.crm_command_id(us.execution_id, p) for p in paths}) == 3


def test_trace_explains_every_step_and_costs_nothing_when_off() -> None:
    steps = [
        {"type": "filter", "condition": {"field": "lead.email", "op": "exists"}},
        SCORE,
        {"type": "tier", "thresholds": [{"tier": "A", "min_score": 40}], "default_tier": "B"},
    ]
    assert run(steps, employees=5000).trace is None
    trace = run(steps, trace=True, employees="many").trace
    assert [entry["type"] for entry in trace] == ["filter", "score", "tier"]
    big = trace[1]["rules"][0]["condition"]
    assert big["result"] is False and big["note"] == "type mismatch: str compared with int"
