"""POST /workflows/{id}/test: the worker's engine, a full trace, and no side effects."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from drippulse.settings import Settings
from processors.templates import LEAD_QUALIFICATION
from streams import topics
from tests.stack import read_topic

pytestmark = pytest.mark.stack

HOT = {
    "event_type": "lead.created",
    "lead": {
        "lead_id": "hot",
        "email": "ada@acme.io",
        "title": "VP Sales",
        "employees": 900,
        "industry": "software",
        "lead_source": "demo_request",
    },
}
PERSONAL = {"event_type": "lead.created", "lead": {"lead_id": "p", "email": "bob@gmail.com"}}


def test_draft_is_tested_with_a_trace_and_nothing_is_produced(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    client = org["client"]
    definition = copy.deepcopy(LEAD_QUALIFICATION)
    definition["trigger"]["condition"] = {"not": {"field": "lead.title", "op": "regex", "value": "(?i)intern"}}
    workflow = client.post("/api/v1/workflows", json={"name": "draft", "definition": definition}).json()

    intern = {"event_type": "lead.created", "lead": {"lead_id": "i", "email": "i@acme.io", "title": "Intern"}}
    response = client.post(f"/api/v1/workflows/{workflow['id']}/test", json={"events": [HOT, PERSONAL, intern]})
    assert response.status_code == 200, response.text
    hot, personal, skipped = response.json()["results"]

    decided = hot["execution"]
    assert (decided["status"], decided["tier"], decided["score"]) == ("completed", "A", 90)
    assert decided["owner"] == "alice@acme.test" and "round-robin" in decided["routing_reason"]
    assert [c["operation"] for c in hot["planned"]["crm_commands"]] == ["update_lead"]
    assert hot["planned"]["webhook_notifications"][0]["payload"]["data"]["tier"] == "A"
    assert [step["type"] for step in hot["trace"]] == ["filter", "score", "tier", "route", "action", "action"]

    assert personal["execution"]["score"] == -20 and personal["execution"]["tier"] == "C"
    mid_market = next(r for r in personal["trace"][1]["rules"] if r["id"] == "mid_market")
    assert mid_market["condition"]["note"] == "type mismatch: missing compared with int"

    assert skipped["enrolled"] is False and skipped["trigger"]["condition"]["result"] is False
    assert skipped["execution"] is None and skipped["trace"] is None

    assert read_topic(settings, topics.INBOUND_EVENTS, key=org["org_id"]) == []
    assert read_topic(settings, topics.CRM_COMMANDS, key=org["org_id"]) == []


def test_test_endpoint_validates_events_and_scopes_by_org(org_factory: Any) -> None:
    a, b = org_factory(), org_factory()
    workflow = a["client"].post("/api/v1/workflows", json={"name": "x", "definition": LEAD_QUALIFICATION}).json()
    bad = a["client"].post(f"/api/v1/workflows/{workflow['id']}/test", json={"events": [HOT, {"event_type": "nope"}]})
    assert bad.status_code == 422 and any(e["field"].startswith("events.1") for e in bad.json()["errors"])
    assert b["client"].post(f"/api/v1/workflows/{workflow['id']}/test", json={"events": [HOT]}).status_code == 404
