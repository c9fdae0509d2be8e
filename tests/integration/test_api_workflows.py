"""Workflow lifecycle through the API: drafts, activation, versioning, validation problems."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from processors.model import WorkflowDefinition
from processors.templates import LEAD_QUALIFICATION

pytestmark = pytest.mark.stack


def test_versions_and_activation(org_factory: Any) -> None:
    client = org_factory()["client"]
    created = client.post("/api/v1/workflows", json={"name": "LQ", "definition": LEAD_QUALIFICATION}).json()
    assert (created["status"], created["latest_version"], created["active_version"]) == ("draft", 1, None)
    workflow_id = created["id"]

    edited = copy.deepcopy(LEAD_QUALIFICATION)
    edited["steps"][2]["thresholds"][0]["min_score"] = 70
    draft_edit = client.patch(f"/api/v1/workflows/{workflow_id}", json={"definition": edited}).json()
    assert draft_edit["latest_version"] == 1, "editing a draft edits it in place"

    active = client.post(f"/api/v1/workflows/{workflow_id}/activate").json()
    assert (active["status"], active["active_version"]) == ("active", 1)

    edited["steps"][2]["thresholds"][0]["min_score"] = 80
    new_draft = client.patch(f"/api/v1/workflows/{workflow_id}", json={"definition": edited, "name": "LQ v2"}).json()
    assert (new_draft["latest_version"], new_draft["active_version"], new_draft["name"]) == (2, 1, "LQ v2")
    versions = client.get(f"/api/v1/workflows/{workflow_id}/versions").json()["items"]
    assert [(v["version"], v["status"]) for v in versions] == [(1, "active"), (2, "draft")]
    assert versions[0]["definition"]["steps"][2]["thresholds"][0]["min_score"] == 70

    client.post(f"/api/v1/workflows/{workflow_id}/activate", json={"version": 2})
    versions = client.get(f"/api/v1/workflows/{workflow_id}/versions").json()["items"]
    assert [(v["version"], v["status"]) for v in versions] == [(1, "superseded"), (2, "active")]
    assert client.post(f"/api/v1/workflows/{workflow_id}/activate", json={"version": 9}).status_code == 404

    assert [w["id"] for w in client.get("/api/v1/workflows", params={"status": "active"}).json()["items"]] == [
        workflow_id
    ]
    assert client.post(f"/api/v1/workflows/{workflow_id}/deactivate").json()["status"] == "inactive"
    archived = client.post(f"/api/v1/workflows/{workflow_id}/archive").json()
    assert (archived["status"], archived["active_version"]) == ("archived", None)
    for path, body in [("activate", {}), ("archive", {}), ("deactivate", {})]:
        refused = client.post(f"/api/v1/workflows/{workflow_id}/{path}", json=body)
        assert refused.status_code == 409 and refused.json()["type"].endswith("/archived")
    assert client.patch(f"/api/v1/workflows/{workflow_id}", json={"name": "x"}).status_code == 409
    assert len(client.get(f"/api/v1/workflows/{workflow_id}/versions").json()["items"]) == 2


def test_invalid_definition_is_422_with_json_path(org_factory: Any) -> None:
    client = org_factory()["client"]
    bad = copy.deepcopy(LEAD_QUALIFICATION)
    bad["steps"][1]["rules"][2]["points"] = "lots"
    response = client.post("/api/v1/workflows", json={"name": "bad", "definition": bad})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/validation")
    assert {e["field"] for e in problem["errors"]} == {"$.definition.steps[1].rules[2].points"}

    missing = client.post("/api/v1/workflows", json={"definition": LEAD_QUALIFICATION})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "name"


def test_step_types_lists_every_type_with_schema_and_valid_example(org_factory: Any) -> None:
    items = org_factory()["client"].get("/api/v1/workflows/step_types").json()["items"]
    assert {i["name"] for i in items} == {
        "filter",
        "score",
        "tier",
        "route",
        "branch",
        "approval",
        "wait",
        "action.crm_update",
        "action.webhook_notify",
        "action.add_tag",
        "action.create_task",
        "action.log",
        "agent",
    }
    for item in items:
        assert item["config_schema"]["properties"]
        WorkflowDefinition.model_validate({"trigger": {"event_types": ["lead.created"]}, "steps": [item["example"]]})
