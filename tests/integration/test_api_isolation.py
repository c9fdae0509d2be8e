"""Tenant isolation and authentication: another org's resources are invisible, bad keys get 401."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from drippulse.settings import Settings
from processors.templates import LEAD_QUALIFICATION
from tests.integration.helpers import activate_workflow, admin_session

pytestmark = pytest.mark.stack


def test_org_b_cannot_see_org_a(org_factory: Any, api_server: Any) -> None:
    a, b = org_factory("A"), org_factory("B")
    workflow = activate_workflow(a["client"], "A's workflow", LEAD_QUALIFICATION)
    api_server.clickhouse.insert_rows(
        "executions",
        [
            {
                "execution_id": "exec-of-a",
                "org_id": a["org_id"],
                "workflow_id": workflow["id"],
                "workflow_version": 1,
                "event_id": "e",
                "event_type": "lead.created",
                "lead_id": "l",
                "status": "completed",
                "status_reason": "",
                "score": 1,
                "score_breakdown": {},
                "tier": "A",
                "owner": "o",
                "routing_reason": "",
                "actions": [],
                "event_occurred_at": 1.0,
                "evaluated_at": 1.0,
            }
        ],
    )

    assert a["client"].get(f"/api/v1/workflows/{workflow['id']}").status_code == 200
    assert a["client"].get("/api/v1/executions/exec-of-a").status_code == 200
    for method, path in [
        ("GET", f"/api/v1/workflows/{workflow['id']}"),
        ("PATCH", f"/api/v1/workflows/{workflow['id']}"),
        ("POST", f"/api/v1/workflows/{workflow['id']}/activate"),
        ("GET", f"/api/v1/workflows/{workflow['id']}/versions"),
        ("GET", "/api/v1/executions/exec-of-a"),
    ]:
        response = b["client"].request(method, path, json={} if method != "GET" else None)
        assert response.status_code == 404, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("/not-found")
    assert b["client"].get("/api/v1/workflows").json()["items"] == []
    assert b["client"].get("/api/v1/executions").json()["items"] == []


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer dpk_not-a-real-key"}, {"Authorization": "Basic eDp5"}]
)
def test_missing_or_unknown_key_is_401(headers: dict[str, str], api_server: Any, settings: Settings) -> None:
    response = httpx.get(f"{settings.api_url}/api/v1/workflows", headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert body["status"] == 401 and body["type"].endswith("/unauthorized")


def test_revoked_key_is_401_and_roles_are_enforced(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    admin = admin_session(settings, org)
    created = admin.post("/api/v1/api_keys", json={"name": "dashboard", "role": "viewer"}).json()
    reader = httpx.Client(base_url=settings.api_url, headers={"Authorization": f"Bearer {created['key']}"})
    assert reader.get("/api/v1/workflows").status_code == 200
    forbidden = reader.post("/api/v1/workflows", json={"name": "x", "definition": LEAD_QUALIFICATION})
    assert forbidden.status_code == 403
    listed = admin.get("/api/v1/api_keys").json()["items"]
    assert all("key_hash" not in k and "key" not in k for k in listed)
    assert admin.delete(f"/api/v1/api_keys/{created['id']}").status_code == 200
    assert reader.get("/api/v1/workflows").status_code == 401
