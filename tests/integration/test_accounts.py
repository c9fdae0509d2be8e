"""Accounts are global, organizations are tenants: what one organization's admin can do with an
invitation must never reach another organization's members. An account whose password nobody has
proven yet belongs to nobody, and a membership counts for a login only once the password was proven
for it."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from drippulse.operators import create_org, create_user
from drippulse.settings import Settings
from tests import control_plane
from tests.integration.helpers import accept_invitation, admin_session, login

pytestmark = pytest.mark.stack
PASSWORD = "correct horse battery staple"
ATTACKER = "the other org's admin chose this"


def _email(what: str) -> str:
    return f"{what}-{uuid.uuid4().hex[:10]}@example.com"


def _invite(settings: Settings, org: dict[str, Any], email: str, roles: list[str] | None = None) -> str:
    invited = admin_session(settings, org).post(
        "/api/v1/members/invitations", json={"email": email, "roles": roles or ["admin"]}
    )
    assert invited.status_code == 201, invited.text
    return str(invited.json()["token"])


def test_invitation_from_another_org_never_sets_an_existing_accounts_password(
    org_factory: Any, settings: Settings
) -> None:
    email = _email("ada")
    acme = create_org(settings, "Acme", admin_email=email)
    assert acme.admin_invitation is not None, "no password given: the first person gets an invitation"
    rival = org_factory("Rival")
    rival_invitation = _invite(settings, rival, email)

    takeover = accept_invitation(settings, rival_invitation, ATTACKER)
    assert takeover.status_code == 401, takeover.text
    assert takeover.json()["type"].endswith("/bad-credentials")
    for extra in ({}, {"org_id": acme.org_id}, {"org_id": rival["org_id"]}):
        assert login(settings, email, ATTACKER, **extra).status_code == 401, extra

    own = accept_invitation(settings, acme.admin_invitation, PASSWORD)
    assert own.status_code == 200, own.text
    assert own.json()["org_id"] == acme.org_id and sorted(own.json()["roles"]) == ["admin", "approver", "editor"]
    joined = accept_invitation(settings, rival_invitation, PASSWORD)
    assert joined.status_code == 200 and joined.json()["org_id"] == rival["org_id"], "with the account's password"


def test_an_account_made_through_one_orgs_invitation_never_reaches_another_orgs_membership(
    org_factory: Any, settings: Settings
) -> None:
    email = _email("early")
    rival = org_factory("Rival")
    made = accept_invitation(settings, _invite(settings, rival, email), ATTACKER)
    assert made.status_code == 200, "the rival's admin accepted their own invitation for someone else's email"

    acme = create_org(settings, "Acme", admin_email=email)
    assert acme.admin_invitation is not None, "the membership waits until the password is proven for it"
    assert login(settings, email, ATTACKER, org_id=acme.org_id).status_code == 401
    only_rival = login(settings, email, ATTACKER)
    assert only_rival.status_code == 200, only_rival.text
    assert only_rival.json()["org_id"] == rival["org_id"] and acme.org_id not in only_rival.text
    assert accept_invitation(settings, acme.admin_invitation, PASSWORD).status_code == 401, "no new password"


def test_accepting_answers_alike_whether_or_not_the_account_has_a_password(
    org_factory: Any, settings: Settings
) -> None:
    home, rival = org_factory("Home"), org_factory("Rival")
    with_password, without = _email("set"), _email("unset")
    control_plane.add_member(settings, home["org_id"], with_password, ["viewer"], PASSWORD)
    create_user(settings, home["org_id"], without, "", ["viewer"], None)
    answers = []
    for email in (with_password, without):
        refused = accept_invitation(settings, _invite(settings, rival, email), "a guessed password")
        problem = refused.json()
        answers.append((refused.status_code, problem["type"], problem["title"], problem["detail"]))
    assert answers[0] == answers[1], answers
    assert answers[0][0] == 401


def test_wrong_passwords_on_accept_count_against_the_login_throttle(org_factory: Any, settings: Settings) -> None:
    home, rival = org_factory("Home"), org_factory("Rival")
    email = _email("guessed")
    control_plane.add_member(settings, home["org_id"], email, ["viewer"], PASSWORD)
    token = _invite(settings, rival, email)
    assert [accept_invitation(settings, token, f"guess number {i}").status_code for i in range(10)] == [401] * 10
    refused = accept_invitation(settings, token, PASSWORD)
    assert refused.status_code == 429 and refused.json()["type"].endswith("/too-many-logins"), refused.text
    assert login(settings, email, PASSWORD).status_code == 429, "the same count as logins"


def test_a_login_lists_only_organizations_the_password_was_proven_for(org_factory: Any, settings: Settings) -> None:
    first, second = org_factory("First"), org_factory("Second")
    email = _email("two-orgs")
    control_plane.add_member(settings, first["org_id"], email, ["viewer"], PASSWORD)
    _, _, invitation = create_user(settings, second["org_id"], email, "", ["editor"], None)
    assert invitation is not None, "the account has a password: the person proves it for the new membership"

    wrong = login(settings, email, "not the password")
    assert wrong.status_code == 401 and first["org_id"] not in wrong.text and second["org_id"] not in wrong.text
    only_first = login(settings, email, PASSWORD)
    assert only_first.status_code == 200 and only_first.json()["org_id"] == first["org_id"], only_first.text
    assert login(settings, email, PASSWORD, org_id=second["org_id"]).status_code == 401

    proven = accept_invitation(settings, invitation, PASSWORD)
    assert proven.status_code == 200 and proven.json()["org_id"] == second["org_id"], proven.text
    both = login(settings, email, PASSWORD)
    assert both.status_code == 422 and both.json()["type"].endswith("/organization-required")
    assert first["org_id"] in both.text and second["org_id"] in both.text


def test_a_deactivated_members_invitation_does_not_bring_them_back(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    email = _email("left")
    _, user_id, invitation = create_user(settings, org["org_id"], email, "", ["editor"], None)
    assert invitation is not None
    admin = admin_session(settings, org)
    assert admin.post(f"/api/v1/members/{user_id}/deactivate").status_code == 200
    refused = accept_invitation(settings, invitation, PASSWORD)
    assert refused.status_code == 401 and refused.json()["type"].endswith("/invalid-invitation"), refused.text
    assert admin.get(f"/api/v1/members/{user_id}").json()["active"] is False

    assert admin.post(f"/api/v1/members/{user_id}/reactivate").status_code == 200
    accepted = accept_invitation(settings, invitation, PASSWORD)
    assert accepted.status_code == 200 and accepted.json()["org_id"] == org["org_id"], accepted.text


def test_two_invitations_for_a_new_email_accepted_at_once_make_one_account(
    org_factory: Any, settings: Settings
) -> None:
    first, second = org_factory("First"), org_factory("Second")
    email = _email("race")
    tokens = [_invite(settings, first, email, ["viewer"]), _invite(settings, second, email, ["viewer"])]
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda token: accept_invitation(settings, token, PASSWORD), tokens))
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert answers[0].json()["user"]["id"] == answers[1].json()["user"]["id"]
    assert login(settings, email, PASSWORD).status_code == 422, "one account, in both organizations"
    again = accept_invitation(settings, tokens[0], PASSWORD)
    assert again.status_code == 401 and again.json()["type"].endswith("/invalid-invitation")
