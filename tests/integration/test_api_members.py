"""Members: an organization keeps at least one active person with the admin role."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from drippulse.settings import Settings
from tests import control_plane
from tests.integration.helpers import admin_session

pytestmark = pytest.mark.stack


PASSWORD = "a long password"


def _person(client: httpx.Client, email: str, roles: list[str]) -> tuple[str, httpx.Client]:
    """Invited by `client`'s person, accepted: their user id, and their session."""
    invitation = client.post("/api/v1/members/invitations", json={"email": email, "roles": roles})
    assert invitation.status_code == 201, invitation.text
    accepted = client.post(
        "/api/v1/auth/invitations/accept", json={"token": invitation.json()["token"], "password": PASSWORD}
    )
    assert accepted.status_code == 200, accepted.text
    token = accepted.json()["token"]
    return str(accepted.json()["user"]["id"]), httpx.Client(
        base_url=client.base_url, headers={"Authorization": f"Bearer {token}"}
    )


def test_the_last_active_admin_is_kept(org_factory: Any, settings: Settings) -> None:
    org = org_factory("Admins")
    email = f"first-admin-{org['org_id']}@example.com"
    first = control_plane.add_member(settings, org["org_id"], email, ["admin"], PASSWORD)
    login = httpx.post(f"{settings.api_url}/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    client = httpx.Client(base_url=settings.api_url, headers={"Authorization": f"Bearer {login.json()['token']}"})
    second, second_session = _person(client, f"second-admin-{org['org_id']}@example.com", ["admin", "approver"])

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
    deactivated = second_session.post(f"/api/v1/members/{first}/deactivate")
    assert deactivated.status_code == 200, deactivated.text
    assert deactivated.json()["active"] is False


def _every_page(client: httpx.Client, path: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = client.get(path, params={"limit": limit, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        assert len(page.json()["items"]) <= limit
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


def test_members_and_invitations_come_in_pages(org_factory: Any, settings: Settings) -> None:
    org, other = org_factory("Paged"), org_factory("Other")
    client = admin_session(settings, org)
    members = {
        control_plane.add_member(settings, org["org_id"], f"m{i}-{org['org_id']}@example.com", ["viewer"], None)
        for i in range(5)
    }
    members.add(client.get("/api/v1/auth/me").json()["id"])
    for i in range(2):
        control_plane.add_member(settings, other["org_id"], f"o{i}-{other['org_id']}@example.com", ["viewer"], None)
    invited = set()
    for i in range(5):
        invitation = {"email": f"i{i}-{org['org_id']}@example.com", "roles": ["viewer"]}
        invited.add(client.post("/api/v1/members/invitations", json=invitation).json()["id"])

    listed = _every_page(client, "/api/v1/members", 2)
    assert sorted(m["user_id"] for m in listed) == sorted(members)
    assert [m["joined_at_ms"] for m in listed] == sorted((m["joined_at_ms"] for m in listed), reverse=True)
    pending = _every_page(client, "/api/v1/members/invitations", 3)
    assert len(pending) == 10, "five invitations, and the five the members were added with"
    assert invited <= {i["id"] for i in pending} and len({i["id"] for i in pending}) == len(pending)
    assert [i["created_at_ms"] for i in pending] == sorted((i["created_at_ms"] for i in pending), reverse=True)

    foreign_cursor = admin_session(settings, other).get("/api/v1/members", params={"limit": 1}).json()["next_cursor"]
    after_it = client.get("/api/v1/members", params={"cursor": foreign_cursor})
    assert {m["user_id"] for m in after_it.json()["items"]} <= members, "a cursor is a position, not rows"
    for path in ("/api/v1/members", "/api/v1/members/invitations"):
        for limit in (0, 501):
            assert client.get(path, params={"limit": limit}).status_code == 422
        bad = client.get(path, params={"cursor": "not a cursor"})
        assert bad.status_code == 400 and bad.json()["type"].endswith("/bad-cursor")
