"""Four-eyes change control: with the project's policy on, activating opens a change request that
another person with the Approver role decides; the audit log shows request, decision and activation."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from drippulse.settings import Settings
from processors.templates import LEAD_QUALIFICATION
from tests import control_plane

pytestmark = pytest.mark.stack
PASSWORD = "correct horse battery staple"


def _session(settings: Settings, org: dict[str, Any], email: str, roles: list[str]) -> httpx.Client:
    control_plane.add_member(settings, org["org_id"], email, roles, PASSWORD)
    login = httpx.post(f"{settings.api_url}/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return httpx.Client(base_url=settings.api_url, headers={"Authorization": f"Bearer {login.json()['token']}"})


def test_the_author_cannot_approve_their_own_change_another_approver_can(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    admin = org["client"]
    project = admin.post(
        "/api/v1/projects", json={"name": "Gated", "policy": {"workflow_activation_requires_approval": True}}
    ).json()
    ada = _session(settings, org, f"ada-{org['org_id']}@example.com", ["editor", "approver"])
    bob = _session(settings, org, f"bob-{org['org_id']}@example.com", ["approver"])
    viewer = _session(settings, org, f"vic-{org['org_id']}@example.com", ["viewer"])

    workflow = ada.post(
        "/api/v1/workflows", json={"name": "LQ", "definition": LEAD_QUALIFICATION, "project_id": project["id"]}
    ).json()
    asked = ada.post(f"/api/v1/workflows/{workflow['id']}/activate", json={"reason": "new scoring"})
    assert asked.status_code == 202, asked.text
    request = asked.json()
    assert request["status"] == "open" and request["version"] == 1 and request["base_version"] is None
    assert request["requested_by"]["label"].startswith("ada-") and request["reason"] == "new scoring"
    assert any(change["path"] == "/steps" and change["op"] == "added" for change in request["diff"])
    assert admin.get(f"/api/v1/workflows/{workflow['id']}").json()["status"] == "draft", "not active yet"
    assert admin.get(f"/api/v1/workflows/{workflow['id']}/versions/1").json()["status"] == "proposed"

    again = ada.post(f"/api/v1/workflows/{workflow['id']}/activate")
    assert again.status_code == 409 and again.json()["change_request_id"] == request["id"]
    edited = ada.patch(f"/api/v1/workflows/{workflow['id']}", json={"definition": LEAD_QUALIFICATION}).json()
    assert edited["latest_version"] == 2, "the proposed version is frozen: an edit makes a new draft"

    own = ada.post(f"/api/v1/change_requests/{request['id']}/approve", json={"comment": "lgtm"})
    assert own.status_code == 403 and own.json()["type"].endswith("/four-eyes")
    assert viewer.post(f"/api/v1/change_requests/{request['id']}/approve").status_code == 403
    assert admin.post(f"/api/v1/change_requests/{request['id']}/approve").status_code == 403, "keys do not decide"
    assert admin.get(f"/api/v1/workflows/{workflow['id']}").json()["active_version"] is None

    approved = bob.post(f"/api/v1/change_requests/{request['id']}/approve", json={"comment": "ship it"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved" and approved.json()["decided_by"]["label"].startswith("bob-")
    active = admin.get(f"/api/v1/workflows/{workflow['id']}").json()
    assert (active["status"], active["active_version"]) == ("active", 1)
    assert bob.post(f"/api/v1/change_requests/{request['id']}/reject", json={"comment": "x"}).status_code == 409

    log = admin.get("/api/v1/audit_log", params={"project_id": project["id"]}).json()["items"]
    trail = [(entry["action"], entry["actor"]["label"].split("-")[0]) for entry in reversed(log)]
    assert ("change_request.create", "ada") in trail
    decision, activation = trail.index(("change_request.approve", "bob")), trail.index(("workflow.activate", "bob"))
    assert trail.index(("change_request.create", "ada")) < decision < activation
    activated = next(e for e in log if e["action"] == "workflow.activate")
    assert activated["after"]["change_request_id"] == request["id"] and activated["request_id"]


def test_rejection_returns_the_version_to_draft_and_policy_off_activates_at_once(
    org_factory: Any, settings: Settings
) -> None:
    org = org_factory()
    admin = org["client"]
    gated = admin.post(
        "/api/v1/projects", json={"name": "Gated", "policy": {"workflow_activation_requires_approval": True}}
    ).json()
    editor = _session(settings, org, f"ed-{org['org_id']}@example.com", ["editor"])
    approver = _session(settings, org, f"ap-{org['org_id']}@example.com", ["approver"])
    workflow = editor.post(
        "/api/v1/workflows", json={"name": "x", "definition": LEAD_QUALIFICATION, "project_id": gated["id"]}
    ).json()
    request = editor.post(f"/api/v1/workflows/{workflow['id']}/activate").json()
    assert approver.post(f"/api/v1/change_requests/{request['id']}/reject", json={}).status_code == 422
    rejected = approver.post(f"/api/v1/change_requests/{request['id']}/reject", json={"comment": "too aggressive"})
    assert rejected.status_code == 200 and rejected.json()["decision_comment"] == "too aggressive"
    assert admin.get(f"/api/v1/workflows/{workflow['id']}/versions/1").json()["status"] == "draft"
    listed = admin.get("/api/v1/change_requests", params={"status": "rejected"}).json()["items"]
    assert [r["id"] for r in listed] == [request["id"]]

    admin.patch(f"/api/v1/projects/{gated['id']}", json={"policy": {"workflow_activation_requires_approval": False}})
    direct = editor.post(f"/api/v1/workflows/{workflow['id']}/activate")
    assert direct.status_code == 200 and direct.json()["status"] == "active"


def test_an_agent_key_always_goes_through_a_change_request(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    agent_key = org["client"].post("/api/v1/api_keys", json={"name": "agent", "role": "editor", "agent": True}).json()
    agent = httpx.Client(base_url=settings.api_url, headers={"Authorization": f"Bearer {agent_key['key']}"})
    workflow = agent.post("/api/v1/workflows", json={"name": "x", "definition": LEAD_QUALIFICATION}).json()
    proposed = agent.post(f"/api/v1/workflows/{workflow['id']}/activate")
    assert proposed.status_code == 202 and proposed.json()["requested_by"]["type"] == "api_key"
    approver = _session(settings, org, f"ap-{org['org_id']}@example.com", ["approver"])
    assert approver.post(f"/api/v1/change_requests/{proposed.json()['id']}/approve").status_code == 200
