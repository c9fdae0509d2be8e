"""The OpenAPI document builds and lists every resource: /docs is where API clients and agents start."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from drippulse.settings import Settings

pytestmark = pytest.mark.stack


def test_openapi_lists_every_resource(api_server: Any, settings: Settings) -> None:
    spec = httpx.get(f"{settings.api_url}/openapi.json", timeout=10)
    assert spec.status_code == 200, spec.text[:500]
    paths = set(spec.json()["paths"])
    for path in (
        "/api/v1/workflows",
        "/api/v1/events",
        "/api/v1/executions",
        "/api/v1/webhooks/{webhook_id}/deliveries",
        "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
        "/api/v1/webhooks/{webhook_id}/test",
        "/api/v1/inbound_sources",
        "/api/v1/hooks/{source_id}",
        "/api/v1/integration_connections",
        "/api/v1/crm_commands",
    ):
        assert path in paths, path
    assert httpx.get(f"{settings.api_url}/docs", timeout=10).status_code == 200
