from __future__ import annotations

import copy
from typing import Any

from processors.compiler import compile_workflow
from processors.model import WorkflowDefinition
from processors.replay import compare_versions
from processors.templates import LEAD_QUALIFICATION


def compiled(definition: dict[str, Any], version: int) -> Any:
    return compile_workflow("wf", version, WorkflowDefinition.model_validate(definition))


def lead(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "org_id": "o",
        "event_type": "lead.created",
        "occurred_at_ms": 1,
        "lead": {"lead_id": f"l{n}", "email": f"x{n}@acme.io", **fields},
    }


def test_compare_versions_counts_each_kind_of_change() -> None:
    candidate = copy.deepcopy(LEAD_QUALIFICATION)
    candidate["trigger"]["condition"] = {"field": "lead.country", "op": "neq", "value": "BR"}
    candidate["steps"][2]["thresholds"][0]["min_score"] = 85
    candidate["steps"].append({"type": "action", "action": "add_tag", "tag": "new"})
    events = [
        lead(1, title="VP", employees=500, industry="software"),  # 65: A -> B, and the new tag
        lead(2, country="BR"),  # no longer enrolls
        lead(3, title="Intern"),  # C both times; only the new tag differs
    ]
    report = compare_versions(compiled(LEAD_QUALIFICATION, 1), compiled(candidate, 2), events, examples=5).as_dict()
    assert report["events"] == 3 and report["evaluated"] == 3
    assert report["changes"] == {"enrollment": 1, "tier": 1, "owner": 0, "actions": 2}
    assert report["leads_changed"] == 3
    assert report["examples"]["tier"] == [{"event_id": "e1", "lead_id": "l1", "before": "A", "after": "B"}]
    assert report["examples"]["enrollment"][0] == {"event_id": "e2", "lead_id": "l2", "before": True, "after": False}
