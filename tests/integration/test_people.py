"""People: invitations, logins (bearer and cookie with CSRF), logout, and deactivation that stops a
member's sessions and the keys they issued at once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from drippulse.operators import create_user
from drippulse.settings import Settings
from tests import control_plane
from tests.integration.helpers import accept_invitation, admin_session

pytestmark = pytest.mark.stack
PASSWORD = "correct horse battery staple"


def _login(settings: Settings, email: str, password: str = PASSWORD, **extra: str) -> httpx.Response:
    return httpx.post(f"{settings.api_url}/api/v1/auth/login", json={"email": email, "password": password, **extra})


def _bearer(settings: Settings, token: str) -> httpx.Client:
    return httpx.Client(base_url=settings.api_url, headers={"Authorization": f"Bearer {token}"})


def test_an_invited_person_joins_logs_in_and_out(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    email = f"Grace-{org['org_id']}@Example.com"
    admin = admin_session(settings, org)
    invited = admin.post("/api/v1/members/invitations", json={"email": email, "roles": ["editor", "viewer"]})
    assert invited.status_code == 201, invited.text
    token = invited.json()["token"]
    assert token.startswith("dpi_") and invited.json()["email"] == email.lower()
    pending = admin.get("/api/v1/members/invitations").json()["items"]
    assert [i["id"] for i in pending] == [invited.json()["id"]] and "token" not in pending[0]

    short = httpx.post(f"{settings.api_url}/api/v1/auth/invitations/accept", json={"token": token, "password": "x"})
    assert short.status_code == 422
    accepted = httpx.post(
        f"{settings.api_url}/api/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD, "name": "G"}
    )
    assert accepted.status_code == 200, accepted.text
    assert sorted(accepted.json()["roles"]) == ["editor", "viewer"] and accepted.json()["org_id"] == org["org_id"]
    reused = httpx.post(
        f"{settings.api_url}/api/v1/auth/invitations/accept", json={"token": token, "password": PASSWORD}
    )
    assert reused.status_code == 401

    assert _login(settings, email, "wrong password").status_code == 401
    assert _login(settings, "nobody@example.com").status_code == 401
    session = _login(settings, email.upper())
    assert session.status_code == 200
    client = _bearer(settings, session.json()["token"])
    me = client.get("/api/v1/auth/me").json()
    assert me["kind"] == "user" and me["label"] == email.lower() and sorted(me["roles"]) == ["editor", "viewer"]
    assert client.post("/api/v1/auth/logout").status_code == 204
    assert client.get("/api/v1/auth/me").status_code == 401


def test_the_cookie_needs_the_csrf_token_for_changes(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    email = f"cookie-{org['org_id']}@example.com"
    control_plane.add_member(settings, org["org_id"], email, ["editor"], PASSWORD)
    browser = httpx.Client(base_url=settings.api_url)
    login = browser.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200 and "dp_session" in browser.cookies
    cookie = login.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert browser.get("/api/v1/workflows").status_code == 200, "reads need no CSRF token"
    event = {"event_type": "lead.created", "lead": {"lead_id": "l-1"}}
    refused = browser.post("/api/v1/events", json=event)
    assert refused.status_code == 403 and refused.json()["type"].endswith("/csrf")
    accepted = browser.post("/api/v1/events", json=event, headers={"X-CSRF-Token": login.json()["csrf_token"]})
    assert accepted.status_code == 202


def test_the_session_cookie_carries_sessions_only(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    browser = httpx.Client(base_url=settings.api_url, cookies={"dp_session": org["key"]})
    read = browser.get("/api/v1/workflows")
    assert read.status_code == 401 and read.headers["content-type"] == "application/problem+json", read.text
    write = browser.post("/api/v1/events", json={"event_type": "lead.created", "lead": {"lead_id": "l-1"}})
    assert write.status_code == 401, "an API key in the cookie never skips the CSRF check"


def test_a_malformed_csrf_token_is_refused_with_a_problem(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    email = f"csrf-{org['org_id']}@example.com"
    control_plane.add_member(settings, org["org_id"], email, ["editor"], PASSWORD)
    browser = httpx.Client(base_url=settings.api_url)
    assert browser.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).status_code == 200
    event = {"event_type": "lead.created", "lead": {"lead_id": "l-1"}}
    for sent in ("é".encode(), "\xff".encode("latin-1"), b"not the token", b""):
        refused = browser.post("/api/v1/events", json=event, headers={"X-CSRF-Token": sent})
        assert refused.status_code == 403, (sent, refused.status_code, refused.text)
        assert refused.json()["type"].endswith("/csrf")


def test_deactivation_stops_sessions_and_issued_keys_at_once(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    stayer_email = f"stayer-{org['org_id']}@example.com"
    create_user(settings, org["org_id"], stayer_email, "", ["admin"], PASSWORD)
    stayer = _bearer(settings, _login(settings, stayer_email).json()["token"])
    email = f"leaver-{org['org_id']}@example.com"
    org_id, user_id, invitation = create_user(settings, org["org_id"], email, "Leaver", ["admin"], PASSWORD)
    assert (org_id, invitation) == (org["org_id"], None)
    session = _bearer(settings, _login(settings, email).json()["token"])
    issued = session.post("/api/v1/api_keys", json={"name": "by leaver", "role": "viewer"}).json()
    assert issued["issued_by"] == email
    key = _bearer(settings, issued["key"])
    assert key.get("/api/v1/workflows").status_code == 200

    deactivated = stayer.post(f"/api/v1/members/{user_id}/deactivate")
    assert deactivated.status_code == 200 and deactivated.json()["active"] is False
    assert session.get("/api/v1/workflows").status_code == 401
    assert key.get("/api/v1/workflows").status_code == 401
    assert _login(settings, email).status_code == 401

    stayer.post(f"/api/v1/members/{user_id}/reactivate")
    assert key.get("/api/v1/workflows").status_code == 200, "the key is the org's; it works again"
    assert session.get("/api/v1/workflows").status_code == 401, "a revoked session stays revoked"


def test_the_last_admin_stays_and_role_changes_apply_on_the_next_request(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    email = f"solo-{org['org_id']}@example.com"
    _, user_id, _ = create_user(settings, org["org_id"], email, "", ["admin"], PASSWORD)
    solo = _bearer(settings, _login(settings, email).json()["token"])
    assert solo.put(f"/api/v1/members/{user_id}/roles", json={"roles": ["viewer"]}).status_code == 409
    assert solo.post(f"/api/v1/members/{user_id}/deactivate").status_code == 409
    other = f"second-{org['org_id']}@example.com"
    create_user(settings, org["org_id"], other, "", ["admin"], PASSWORD)
    second = _bearer(settings, _login(settings, other).json()["token"])
    assert second.put(f"/api/v1/members/{user_id}/roles", json={"roles": ["viewer"]}).status_code == 200
    assert solo.get("/api/v1/members").status_code == 403, "no longer an admin"
    assert solo.get("/api/v1/workflows").status_code == 200


def test_a_person_in_two_orgs_names_the_one_to_log_in_to(org_factory: Any, settings: Settings) -> None:
    first, second = org_factory(), org_factory()
    email = f"both-{first['org_id']}@example.com"
    create_user(settings, first["org_id"], email, "", ["viewer"], PASSWORD)
    _, _, invitation = create_user(settings, second["org_id"], email, "", ["editor"], None)
    assert invitation is not None
    assert accept_invitation(settings, invitation, PASSWORD).status_code == 200, "proves the password for it"
    ambiguous = _login(settings, email)
    assert ambiguous.status_code == 422 and ambiguous.json()["type"].endswith("/organization-required")
    chosen = _login(settings, email, org_id=second["org_id"])
    assert chosen.status_code == 200 and chosen.json()["roles"] == ["editor"]
    scoped = _bearer(settings, chosen.json()["token"])
    assert scoped.get("/api/v1/auth/me").json()["org_id"] == second["org_id"]


def test_repeated_failed_logins_are_refused_for_a_while(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    email = f"target-{org['org_id']}@example.com"
    control_plane.add_member(settings, org["org_id"], email, ["viewer"], PASSWORD)
    assert [_login(settings, email, "guess").status_code for _ in range(10)] == [401] * 10
    refused = _login(settings, email)
    assert refused.status_code == 429 and 0 < int(refused.headers["retry-after"]) <= 900, "even the right password"
    assert refused.json()["type"].endswith("/too-many-logins")
