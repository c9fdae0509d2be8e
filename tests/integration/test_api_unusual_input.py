"""Input the request models let through but the stores or parsers cannot take: each gets a declared
4xx problem, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from drippulse.settings import Settings

pytestmark = pytest.mark.stack


def test_an_undecodable_body_is_a_declared_400(org_factory: Any, settings: Settings) -> None:
    client = org_factory()["client"]
    not_utf8 = b'{"name": "\xff"}'
    response = client.post("/api/v1/projects", content=not_utf8, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    document = httpx.get(f"{settings.api_url}/openapi.json").json()
    assert "400" in document["paths"]["/api/v1/projects"]["post"]["responses"]
