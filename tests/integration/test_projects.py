"""Projects: every org has a default one; workflows belong to one; a project-scoped key sees and
changes only its project's resources (404 outside it, as for another org)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from drippulse.settings import Settings
from processors.templates import LEAD_QUALIFICATION
from tests.integration.helpers import admin_session

pytestmark = pytest.mark.stack


def test_projects_group_workflows_and_scope_keys(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    admin = org["client"]
    (default,) = admin.get("/api/v1/projects").json()["items"]
    assert default["is_default"] and default["id"] == org["project_id"]
    sales = admin.post("/api/v1/projects", json={"name": "Sales"}).json()
    assert admin.post("/api/v1/projects", json={"name": "Sales"}).status_code == 409
    in_default = admin.post("/api/v1/workflows", json={"name": "a", "definition": LEAD_QUALIFICATION}).json()
    in_sales = admin.post(
        "/api/v1/workflows", json={"name": "b", "definition": LEAD_QUALIFICATION, "project_id": sales["id"]}
    ).json()
    assert in_default["project_id"] == default["id"] and in_sales["project_id"] == sales["id"]
    listed = admin.get("/api/v1/workflows", params={"project_id": sales["id"]}).json()["items"]
    assert [w["id"] for w in listed] == [in_sales["id"]]

    issuer = admin_session(settings, org)
    key = issuer.post("/api/v1/api_keys", json={"name": "sales bot", "role": "editor", "project_id": sales["id"]})
    scoped = httpx.Client(base_url=settings.api_url, headers={"Authorization": f"Bearer {key.json()['key']}"})
    assert [w["id"] for w in scoped.get("/api/v1/workflows").json()["items"]] == [in_sales["id"]]
    assert [p["id"] for p in scoped.get("/api/v1/projects").json()["items"]] == [sales["id"]]
    assert scoped.get(f"/api/v1/workflows/{in_default['id']}").status_code == 404
    assert scoped.post(f"/api/v1/workflows/{in_default['id']}/activate").status_code == 404
    assert scoped.get(f"/api/v1/projects/{default['id']}").status_code == 404
    created = scoped.post("/api/v1/workflows", json={"name": "c", "definition": LEAD_QUALIFICATION}).json()
    assert created["project_id"] == sales["id"], "a scoped key creates in its own project"
    elsewhere = {"name": "d", "definition": LEAD_QUALIFICATION, "project_id": default["id"]}
    assert scoped.post("/api/v1/workflows", json=elsewhere).status_code == 404
    assert scoped.get("/api/v1/webhooks").status_code == 403, "org-level resources need an org-wide key"

    assert admin.delete(f"/api/v1/projects/{default['id']}").status_code == 409
    assert admin.delete(f"/api/v1/projects/{sales['id']}").status_code == 409, "it holds workflows and a key"
    empty = admin.post("/api/v1/projects", json={"name": "Empty"}).json()
    assert admin.delete(f"/api/v1/projects/{empty['id']}").status_code == 204
