"""Webhook subscriptions: secrets shown once and sealed at rest, SSRF refusals, rotation, isolation."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
from standardwebhooks import Webhook

from drippulse.settings import Settings
from tests.integration.helpers import admin_session
from tests.stack import ApiServer

pytestmark = pytest.mark.stack
PUBLIC = "https://93.184.216.34/hooks/drippulse"


def _redis_dump(settings: Settings) -> bytes:
    client = redis.Redis.from_url(settings.redis_url)
    return b"\n".join(
        b"%s" % v for key in client.scan_iter() if client.type(key) == b"hash" for v in client.hgetall(key).values()
    )


def test_secret_is_shown_once_sealed_at_rest_and_standard(org_factory: Any, settings: Settings) -> None:
    client = org_factory()["client"]
    created = client.post("/api/v1/webhooks", json={"url": PUBLIC, "event_types": ["lead.qualified"]})
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("whsec_")
    signer = Webhook(secret)
    now = datetime.now(UTC)
    signature = signer.sign("msg_1", now, '{"ok":true}')
    assert signer.verify(
        '{"ok":true}',
        {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature},
    ) == {"ok": True}

    shown = client.get(f"/api/v1/webhooks/{body['id']}").json()
    assert "secret" not in shown and "secrets" not in shown and shown["signing_secrets"] == 1
    assert secret.encode() not in _redis_dump(settings) and secret[6:].encode() not in _redis_dump(settings)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "https://10.0.0.1/hook",
        "http://169.254.169.254/latest",
        "http://localhost/hook",
        "https://100.64.0.1/",
        "http://[::1]/hook",
        "ftp://host/x",
    ],
)
def test_private_and_metadata_destinations_are_refused(url: str, org_factory: Any) -> None:
    client = org_factory()["client"]
    refused = client.post("/api/v1/webhooks", json={"url": url})
    assert refused.status_code == 422 and refused.json()["type"].endswith("/unsafe-destination")
    created = client.post("/api/v1/webhooks", json={"url": PUBLIC}).json()
    assert client.patch(f"/api/v1/webhooks/{created['id']}", json={"url": url}).status_code == 422


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254\\@localhost/x",
        "http://169.254.169.254\\@93.184.216.34/x",
        "http://127.0.0.1:9\\@93.184.216.34/",
        "http://10.0.0.1:80\\@93.184.216.34:80/",
        "https://user:pass@93.184.216.34/",
        "http://[::ffff:169.254.169.254]/x",
        "http://0xa9.254.169.254/x",
    ],
)
def test_a_url_the_http_client_reads_differently_is_refused_naming_the_field(url: str, org_factory: Any) -> None:
    """The HTTP client reads `\\` as `/` (WHATWG), Python's urlsplit does not: what the API checks
    must be what the worker connects to, so such URLs are refused for webhooks and CRM connections."""
    client = org_factory()["client"]
    refused = client.post("/api/v1/webhooks", json={"url": url})
    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["url"]
    connection = {"type": "rest", "name": "x", "base_url": url}
    refused = client.post("/api/v1/integration_connections", json=connection)
    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["base_url"]


def test_rotation_overlap_update_delete_and_isolation(org_factory: Any) -> None:
    a, b = org_factory(), org_factory()
    created = a["client"].post("/api/v1/webhooks", json={"url": PUBLIC}).json()
    rotated = a["client"].post(f"/api/v1/webhooks/{created['id']}/rotate_secret", json={"overlap_hours": 2}).json()
    assert rotated["secret"] != created["secret"] and rotated["signing_secrets"] == 2
    assert rotated["previous_secret_valid_until_ms"] > created["created_at_ms"]
    immediate = a["client"].post(f"/api/v1/webhooks/{created['id']}/rotate_secret", json={"overlap_hours": 0}).json()
    assert immediate["signing_secrets"] == 1

    assert a["client"].patch(f"/api/v1/webhooks/{created['id']}", json={"enabled": False}).json()["enabled"] is False
    for method in ("GET", "PATCH", "DELETE"):
        assert (
            b["client"]
            .request(method, f"/api/v1/webhooks/{created['id']}", json={} if method == "PATCH" else None)
            .status_code
            == 404
        )
    assert b["client"].get("/api/v1/webhooks").json()["items"] == []
    assert a["client"].delete(f"/api/v1/webhooks/{created['id']}").status_code == 204
    assert a["client"].get(f"/api/v1/webhooks/{created['id']}").status_code == 404


SECRET_URL = "https://93.184.216.34:8443/hooks/cap-T0K3N-9f2a?sig=s3cr3t-query"
REDACTED_URL = "https://93.184.216.34:8443/…"


def _keys(issuer: httpx.Client) -> dict[str, httpx.Client]:
    """A client per role: the org's admin key, and keys a person issued for the others."""
    keys = {}
    for role in ("editor", "viewer", "approver"):
        created = issuer.post("/api/v1/api_keys", json={"name": role, "role": role})
        assert created.status_code == 201, created.text
        keys[role] = httpx.Client(
            base_url=issuer.base_url, headers={"Authorization": f"Bearer {created.json()['key']}"}
        )
    return keys


def test_a_webhook_url_is_shown_whole_only_to_those_who_manage_webhooks(
    org_factory: Any, api_server: ApiServer, settings: Settings
) -> None:
    """A webhook URL often carries a capability token in its path or query: Viewers and Approvers,
    who may read subscriptions but not change them, see scheme, host and port only; so does history
    (the audit log, delivery attempts), whoever reads it."""
    org = org_factory()
    admin = org["client"]
    readers = {"admin": admin, **_keys(admin_session(settings, org))}
    created = admin.post("/api/v1/webhooks", json={"url": SECRET_URL})
    assert created.status_code == 201 and created.json()["url"] == SECRET_URL
    webhook_id = created.json()["id"]
    moved = admin.patch(f"/api/v1/webhooks/{webhook_id}", json={"url": SECRET_URL.replace("s3cr3t", "n3w")})
    assert moved.status_code == 200, moved.text

    expected = {"admin": SECRET_URL, "editor": SECRET_URL, "viewer": REDACTED_URL, "approver": REDACTED_URL}
    for role, url in expected.items():
        reader = readers[role]
        seen = reader.get(f"/api/v1/webhooks/{webhook_id}").json()["url"]
        listed = [w["url"] for w in reader.get("/api/v1/webhooks").json()["items"]]
        assert seen == url.replace("s3cr3t", "n3w") and listed == [seen], role

    entries = admin.get("/api/v1/audit_log", params={"resource_id": webhook_id}).json()["items"]
    assert entries and "T0K3N" not in str(entries) and "s3cr3t" not in str(entries) and "n3w" not in str(entries)
    assert [e["after"]["url"] for e in entries] == [f"{REDACTED_URL} [redacted: changed]", REDACTED_URL]

    test = admin.post(f"/api/v1/webhooks/{webhook_id}/test").json()
    attempt = {
        "attempt_id": "att-old",
        "delivery_id": test["delivery_id"],
        "org_id": org["org_id"],
        "webhook_id": webhook_id,
        "message_id": test["message_id"],
        "event_type": "webhook.test",
        "attempt": 1,
        "url": SECRET_URL,
        "result": "retrying",
        "status_code": 503,
        "latency_ms": 5,
        "error": "HTTP 503",
        "response_excerpt": "",
        "attempted_at": time.time(),
        "next_attempt_at": None,
    }
    api_server.clickhouse.insert_rows("webhook_attempts", [attempt])  # as an earlier build stored it
    for role in expected:
        reader = readers[role]
        detail = reader.get(f"/api/v1/webhooks/{webhook_id}/deliveries/{test['delivery_id']}").json()
        assert [a["url"] for a in detail["attempt_history"]] == [REDACTED_URL], role
