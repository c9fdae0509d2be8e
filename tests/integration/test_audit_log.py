"""The audit log: every control-plane write with its actor, the changed fields (secrets redacted) and
the request id, committed with the change; append-only down to the database."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from drippulse.settings import Settings

pytestmark = pytest.mark.stack


def test_writes_are_audited_with_actor_changes_and_request_id(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    admin = org["client"]
    created = admin.post(
        "/api/v1/webhooks", json={"url": "https://93.184.216.34/hook"}, headers={"X-Request-ID": "req-audit-1"}
    )
    webhook = created.json()
    assert created.headers["x-request-id"] == "req-audit-1"
    admin.patch(f"/api/v1/webhooks/{webhook['id']}", json={"description": "crm sync"})
    admin.post(f"/api/v1/webhooks/{webhook['id']}/rotate_secret")

    entries = admin.get("/api/v1/audit_log", params={"resource_id": webhook["id"]}).json()["items"]
    assert [e["action"] for e in entries] == ["webhook.rotate_secret", "webhook.update", "webhook.create"]
    rotated, updated, create = entries
    assert create["request_id"] == "req-audit-1" and create["actor"]["type"] == "api_key"
    assert updated["before"] == {"description": "", "updated_at": updated["before"]["updated_at"]}
    assert updated["after"]["description"] == "crm sync"
    assert rotated["before"]["secrets"] == rotated["after"]["secrets"] == "[redacted]"
    assert webhook["secret"] not in str(entries), "no secret reaches the log"

    page = admin.get("/api/v1/audit_log", params={"limit": 2}).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = admin.get("/api/v1/audit_log", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert rest["items"][0]["id"] < page["items"][-1]["id"]
    assert admin.get("/api/v1/audit_log", params={"cursor": "nope"}).status_code == 400


def test_a_webhook_url_change_hidden_by_redaction_still_shows_as_a_change(org_factory: Any) -> None:
    """Only the path (a capability token, say) changes: both URLs redact to the same origin, and the
    entry must still say that the URL changed, not show two equal values."""
    admin = org_factory()["client"]
    webhook = admin.post("/api/v1/webhooks", json={"url": "https://93.184.216.34/hooks/token-one"}).json()
    moved = admin.patch(f"/api/v1/webhooks/{webhook['id']}", json={"url": "https://93.184.216.34/hooks/token-two"})
    assert moved.status_code == 200, moved.text

    entries = admin.get("/api/v1/audit_log", params={"resource_id": webhook["id"]}).json()["items"]
    updated = next(e for e in entries if e["action"] == "webhook.update")
    assert updated["before"]["url"] == "https://93.184.216.34/…"
    assert updated["after"]["url"] != updated["before"]["url"], "the entry says the URL changed"
    assert "changed" in updated["after"]["url"] and "token" not in str(updated)


def test_the_database_refuses_to_change_or_delete_an_entry(org_factory: Any, settings: Settings) -> None:
    org_factory()
    url = settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as connection:
        for statement in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                connection.execute(statement)
            connection.rollback()
