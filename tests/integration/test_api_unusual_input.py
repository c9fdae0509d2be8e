"""Input the request models let through but the stores or parsers cannot take: each gets a declared
4xx problem, never a 500."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from drippulse.settings import Settings
from tests.integration.helpers import admin_session

pytestmark = pytest.mark.stack


def _cursor(at_ms: int, row_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([at_ms, row_id]).encode()).decode()


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/api/v1/projects", {"name": "nul\x00name"}, 422),
        ("POST", "/api/v1/inbound_sources", {"name": "s", "mapping": {"lead.email": "data\x00email"}}, 422),
        ("POST", "/api/v1/api_keys", {"name": "k", "role": "viewer", "expires_at": "9999-12-31T23:59:59-01:00"}, 422),
        ("POST", "/api/v1/inbound_sources", {"name": "s", "mapping": {"lead": "a", "lead.email": "b"}}, 422),
        ("GET", "/api/v1/projects/prj%00x", None, 422),
        ("GET", "/api/v1/workflows?project_id=prj%00x", None, 422),
        ("GET", "/api/v1/audit_log?cursor=%C2%B2", None, 400),
        ("GET", f"/api/v1/executions?cursor={_cursor(2**63, 'x')}", None, 400),
        ("GET", f"/api/v1/crm_commands?cursor={_cursor(-(2**63) - 1, 'x')}", None, 400),
        ("GET", "/api/v1/executions?since=0001-01-01T00:00:00", None, 200),
    ],
)
def test_unusual_values_get_a_declared_answer(
    org_factory: Any, settings: Settings, method: str, path: str, body: Any, status: int
) -> None:
    """As an Admin's session, which may call every one of these (issuing keys included)."""
    response = admin_session(settings, org_factory()).request(method, path, json=body)
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.headers["content-type"] == "application/problem+json"


def test_an_undecodable_body_is_a_declared_400(org_factory: Any, settings: Settings) -> None:
    client = org_factory()["client"]
    not_utf8 = b'{"name": "\xff"}'
    response = client.post("/api/v1/projects", content=not_utf8, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    document = httpx.get(f"{settings.api_url}/openapi.json").json()
    assert "400" in document["paths"]["/api/v1/projects"]["post"]["responses"]
