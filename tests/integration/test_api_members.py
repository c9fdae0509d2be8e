"""Members: an organization keeps at least one active person with the admin role."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.stack


def _person(client: httpx.Client, email: str, roles: list[str]) -> str:
    invitation = client.post("/api/v1/members/invitations", json={"email": email, "roles": roles})
    assert invitation.status_code == 201, invitation.text
    accepted = client.post(
        "/api/v1/auth/invitations/accept", json={"token": invitation.json()["token"], "password": "a long password"}
    )
    assert accepted.status_code == 200, accepted.text
    return str(accepted.json()["user"]["id"])


def test_the_last_active_admin_is_kept(org_factory: Any) -> None:
    client = org_factory("Admins")["client"]
    first = _person(client, "first-admin@example.com", ["admin"])
    second = _person(client, "second-admin@example.com", ["admin", "approver"])

    demoted = client.put(f"/api/v1/members/{second}/roles", json={"roles": ["approver"]})
    assert demoted.status_code == 200, demoted.text
    assert demoted.json()["roles"] == ["approver"]

    for refused in (
        client.put(f"/api/v1/members/{first}/roles", json={"roles": ["editor"]}),
        client.post(f"/api/v1/members/{first}/deactivate"),
    ):
        assert refused.status_code == 409, refused.text
        assert refused.json()["type"].endswith("/last-admin")

    assert client.put(f"/api/v1/members/{second}/roles", json={"roles": ["admin"]}).status_code == 200
    deactivated = client.post(f"/api/v1/members/{first}/deactivate")
    assert deactivated.status_code == 200, deactivated.text
    assert deactivated.json()["active"] is False
