"""Four-eyes change control: with the project's policy on, activating opens a change request that
another person with the Approver role decides; the audit log shows request, decision and activation."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from drippulse.operators import create_org
from drippulse.settings import Settings
from processors.templates import LEAD_QUALIFICATION, lead_qualification_with_approval
from tests import control_plane
from tests.integration.helpers import admin_session

pytestmark = pytest.mark.stack
PASSWORD = "correct horse battery staple"
ROUNDS = 25


def _login(settings: Settings, org: dict[str, Any], email: str, roles: list[str]) -> tuple[str, str]:
    """A new member's session token, and their user id."""
    user_id = control_plane.add_member(settings, org["org_id"], email, roles, PASSWORD)
    login = httpx.post(f"{settings.api_url}/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return login.json()["token"], user_id


def _person(settings: Settings, org: dict[str, Any], email: str, roles: list[str]) -> tuple[httpx.Client, str]:
    """A member's session client, and their user id."""
    token, user_id = _login(settings, org, email, roles)
    return _client(settings, token), user_id


def _session(settings: Settings, org: dict[str, Any], email: str, roles: list[str]) -> httpx.Client:
    return _person(settings, org, email, roles)[0]


def _client(settings: Settings, token: str) -> httpx.Client:
    return httpx.Client(base_url=settings.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _key(issuer: httpx.Client, settings: Settings, **fields: Any) -> tuple[httpx.Client, dict[str, Any]]:
    issued = issuer.post("/api/v1/api_keys", json={"name": "mine", **fields})
    assert issued.status_code == 201, issued.text
    return _client(settings, issued.json()["key"]), issued.json()


def _gated(admin: httpx.Client, name: str = "Gated") -> dict[str, Any]:
    project: dict[str, Any] = admin.post(
        "/api/v1/projects", json={"name": name, "policy": {"workflow_activation_requires_approval": True}}
    ).json()
    return project


def _workflow(client: httpx.Client, project: dict[str, Any], definition: dict[str, Any] | None = None) -> str:
    created = client.post(
        "/api/v1/workflows",
        json={"name": "LQ", "definition": definition or LEAD_QUALIFICATION, "project_id": project["id"]},
    )
    assert created.status_code == 201, created.text
    workflow_id: str = created.json()["id"]
    return workflow_id


def _move(client: httpx.Client, workflow_id: str, project: dict[str, Any]) -> httpx.Response:
    return client.patch(f"/api/v1/workflows/{workflow_id}", json={"project_id": project["id"]})


def _refused_as(response: httpx.Response, status: int, kind: str) -> bool:
    return response.status_code == status and response.json()["type"].endswith(f"/{kind}")


def test_the_author_cannot_approve_their_own_change_another_approver_can(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    admin = org["client"]
    project = admin.post(
        "/api/v1/projects", json={"name": "Gated", "policy": {"workflow_activation_requires_approval": True}}
    ).json()
    ada = _session(settings, org, f"ada-{org['org_id']}@example.com", ["editor", "approver"])
    bob = _session(settings, org, f"bob-{org['org_id']}@example.com", ["approver"])
    viewer = _session(settings, org, f"vic-{org['org_id']}@example.com", ["viewer"])

    workflow = ada.post(
        "/api/v1/workflows", json={"name": "LQ", "definition": LEAD_QUALIFICATION, "project_id": project["id"]}
    ).json()
    asked = ada.post(f"/api/v1/workflows/{workflow['id']}/activate", json={"reason": "new scoring"})
    assert asked.status_code == 202, asked.text
    request = asked.json()
    assert request["status"] == "open" and request["version"] == 1 and request["base_version"] is None
    assert request["requested_by"]["label"].startswith("ada-") and request["reason"] == "new scoring"
    assert any(change["path"] == "/steps" and change["op"] == "added" for change in request["diff"])
    assert admin.get(f"/api/v1/workflows/{workflow['id']}").json()["status"] == "draft", "not active yet"
    assert admin.get(f"/api/v1/workflows/{workflow['id']}/versions/1").json()["status"] == "proposed"

    again = ada.post(f"/api/v1/workflows/{workflow['id']}/activate")
    assert again.status_code == 409 and again.json()["change_request_id"] == request["id"]
    edited = ada.patch(f"/api/v1/workflows/{workflow['id']}", json={"definition": LEAD_QUALIFICATION}).json()
    assert edited["latest_version"] == 2, "the proposed version is frozen: an edit makes a new draft"

    own = ada.post(f"/api/v1/change_requests/{request['id']}/approve", json={"comment": "lgtm"})
    assert own.status_code == 403 and own.json()["type"].endswith("/four-eyes")
    assert viewer.post(f"/api/v1/change_requests/{request['id']}/approve").status_code == 403
    assert admin.post(f"/api/v1/change_requests/{request['id']}/approve").status_code == 403, "keys do not decide"
    assert admin.get(f"/api/v1/workflows/{workflow['id']}").json()["active_version"] is None

    approved = bob.post(f"/api/v1/change_requests/{request['id']}/approve", json={"comment": "ship it"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved" and approved.json()["decided_by"]["label"].startswith("bob-")
    active = admin.get(f"/api/v1/workflows/{workflow['id']}").json()
    assert (active["status"], active["active_version"]) == ("active", 1)
    assert bob.post(f"/api/v1/change_requests/{request['id']}/reject", json={"comment": "x"}).status_code == 409

    log = admin.get("/api/v1/audit_log", params={"project_id": project["id"]}).json()["items"]
    trail = [(entry["action"], entry["actor"]["label"].split("-")[0]) for entry in reversed(log)]
    assert ("change_request.create", "ada") in trail
    decision, activation = trail.index(("change_request.approve", "bob")), trail.index(("workflow.activate", "bob"))
    assert trail.index(("change_request.create", "ada")) < decision < activation
    activated = next(e for e in log if e["action"] == "workflow.activate")
    assert activated["after"]["change_request_id"] == request["id"] and activated["request_id"]


def test_rejection_returns_the_version_to_draft_and_policy_off_activates_at_once(
    org_factory: Any, settings: Settings
) -> None:
    org = org_factory()
    admin = org["client"]
    gated = admin.post(
        "/api/v1/projects", json={"name": "Gated", "policy": {"workflow_activation_requires_approval": True}}
    ).json()
    editor = _session(settings, org, f"ed-{org['org_id']}@example.com", ["editor"])
    approver = _session(settings, org, f"ap-{org['org_id']}@example.com", ["approver"])
    workflow = editor.post(
        "/api/v1/workflows", json={"name": "x", "definition": LEAD_QUALIFICATION, "project_id": gated["id"]}
    ).json()
    request = editor.post(f"/api/v1/workflows/{workflow['id']}/activate").json()
    assert approver.post(f"/api/v1/change_requests/{request['id']}/reject", json={}).status_code == 422
    rejected = approver.post(f"/api/v1/change_requests/{request['id']}/reject", json={"comment": "too aggressive"})
    assert rejected.status_code == 200 and rejected.json()["decision_comment"] == "too aggressive"
    assert admin.get(f"/api/v1/workflows/{workflow['id']}/versions/1").json()["status"] == "draft"
    listed = admin.get("/api/v1/change_requests", params={"status": "rejected"}).json()["items"]
    assert [r["id"] for r in listed] == [request["id"]]

    admin.patch(f"/api/v1/projects/{gated['id']}", json={"policy": {"workflow_activation_requires_approval": False}})
    direct = editor.post(f"/api/v1/workflows/{workflow['id']}/activate")
    assert direct.status_code == 200 and direct.json()["status"] == "active"


def test_an_agent_key_always_goes_through_a_change_request(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    agent, _ = _key(admin_session(settings, org), settings, role="editor", agent=True)
    workflow = agent.post("/api/v1/workflows", json={"name": "x", "definition": LEAD_QUALIFICATION}).json()
    proposed = agent.post(f"/api/v1/workflows/{workflow['id']}/activate")
    assert proposed.status_code == 202 and proposed.json()["requested_by"]["type"] == "api_key"
    approver = _session(settings, org, f"ap-{org['org_id']}@example.com", ["approver"])
    assert approver.post(f"/api/v1/change_requests/{proposed.json()['id']}/approve").status_code == 200


def test_a_person_cannot_approve_a_change_made_through_their_own_key(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    project = _gated(org["client"])
    ada, ada_id = _person(settings, org, f"ada-{org['org_id']}@example.com", ["admin", "editor", "approver"])
    bob = _session(settings, org, f"bob-{org['org_id']}@example.com", ["approver"])
    ada_key, _ = _key(ada, settings, role="editor")

    request = ada_key.post(f"/api/v1/workflows/{_workflow(ada_key, project)}/activate").json()
    assert request["requested_by"]["type"] == "api_key" and request["requested_by"]["user_id"] == ada_id

    for decision, body in (("approve", {}), ("reject", {"comment": "mine anyway"})):
        own = ada.post(f"/api/v1/change_requests/{request['id']}/{decision}", json=body)
        assert _refused_as(own, 403, "four-eyes"), own.text
    assert bob.post(f"/api/v1/change_requests/{request['id']}/approve").status_code == 200


def test_a_person_cannot_approve_a_version_they_wrote_through_their_key_and_someone_else_proposed(
    org_factory: Any, settings: Settings
) -> None:
    org = org_factory()
    project = _gated(org["client"])
    ada, _ = _person(settings, org, f"ada-{org['org_id']}@example.com", ["admin", "editor", "approver"])
    carol = _session(settings, org, f"carol-{org['org_id']}@example.com", ["editor"])
    ada_key, _ = _key(ada, settings, role="editor")
    workflow_id = _workflow(carol, project)
    assert ada_key.patch(f"/api/v1/workflows/{workflow_id}", json={"definition": LEAD_QUALIFICATION}).is_success
    request = carol.post(f"/api/v1/workflows/{workflow_id}/activate").json()
    refused = ada.post(f"/api/v1/change_requests/{request['id']}/approve")
    assert _refused_as(refused, 403, "four-eyes"), refused.text


def test_the_key_printed_for_an_orgs_first_admin_acts_for_them_and_issues_no_keys(settings: Settings) -> None:
    """review-1 finding 4: `orgs create --admin-email ada` printed an admin key acting for nobody; Ada
    issued an Editor key with it (acting for nobody too), wrote a version and asked for its
    activation in a gated project through that key, and approved it with her own session."""
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    created = create_org(settings, f"acme-{uuid.uuid4().hex[:8]}", admin_email=email, admin_password=PASSWORD)
    bootstrap = _client(settings, created.api_key)
    login = httpx.post(f"{settings.api_url}/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    ada = _client(settings, login.json()["token"])
    project = _gated(bootstrap)

    issued = bootstrap.post("/api/v1/api_keys", json={"name": "laundering", "role": "editor"})
    assert _refused_as(issued, 403, "forbidden"), "a key never issues keys: " + issued.text
    invited = bootstrap.post("/api/v1/members/invitations", json={"email": f"x-{email}", "roles": ["editor"]})
    assert _refused_as(invited, 403, "forbidden"), "nor changes members: " + invited.text

    request = bootstrap.post(f"/api/v1/workflows/{_workflow(bootstrap, project)}/activate").json()
    assert request["requested_by"]["user_id"] == created.admin_user_id, "the printed key acts for Ada"
    refused = ada.post(f"/api/v1/change_requests/{request['id']}/approve")
    assert _refused_as(refused, 403, "four-eyes"), refused.text


def test_a_key_acting_for_nobody_asks_for_no_reviewed_change_and_does_everything_else(
    org_factory: Any, settings: Settings
) -> None:
    """The admin key of an org created without --admin-email acts for nobody: a change asked for
    through it would have no person for four-eyes to compare. In an ungated project it activates
    at once, as before."""
    org = org_factory()
    admin = org["client"]
    gated, ungated = _gated(admin), admin.post("/api/v1/projects", json={"name": "Open"}).json()
    refused = admin.post(f"/api/v1/workflows/{_workflow(admin, gated)}/activate")
    assert _refused_as(refused, 403, "person-required"), refused.text
    assert admin.post(f"/api/v1/workflows/{_workflow(admin, ungated)}/activate").status_code == 200


def test_a_key_never_issues_keys_so_it_cannot_launder_its_person_away(org_factory: Any, settings: Settings) -> None:
    """Issuing a key is a person's act (or the operator CLI's): an Admin's key that could issue keys
    could make ones acting for nobody. The key acts for Ada, and stops when she is deactivated."""
    org = org_factory()
    ada, ada_id = _person(settings, org, f"ada-{org['org_id']}@example.com", ["admin", "editor", "approver"])
    ada_admin_key, _ = _key(ada, settings, role="admin")
    refused = ada_admin_key.post("/api/v1/api_keys", json={"name": "laundering", "role": "editor"})
    assert _refused_as(refused, 403, "forbidden"), refused.text

    root = _session(settings, org, f"root-{org['org_id']}@example.com", ["admin"])
    assert root.post(f"/api/v1/members/{ada_id}/deactivate").status_code == 200
    assert ada_admin_key.get("/api/v1/workflows").status_code == 401, "it stops with the person it acts for"


def test_a_key_acting_for_a_person_is_still_not_that_person(org_factory: Any, settings: Settings) -> None:
    """The key carries its issuer for four-eyes, never their right to decide or their identity."""
    org = org_factory()
    ada, ada_id = _person(settings, org, f"ada-{org['org_id']}@example.com", ["admin", "editor", "approver"])
    approver_key, issued = _key(ada, settings, role="approver")
    editor = _session(settings, org, f"ed-{org['org_id']}@example.com", ["editor"])
    request = editor.post(f"/api/v1/workflows/{_workflow(editor, _gated(org['client']))}/activate").json()
    assert approver_key.post(f"/api/v1/change_requests/{request['id']}/approve").status_code == 403
    me = approver_key.get("/api/v1/auth/me").json()
    assert (me["kind"], me["id"]) == ("api_key", issued["id"]) and me["id"] != ada_id
    assert approver_key.get("/api/v1/approvals", params={"assignee": "me"}).status_code == 400


def test_a_workflow_never_leaves_a_gated_project_so_its_next_version_skips_review(
    org_factory: Any, settings: Settings
) -> None:
    org = org_factory()
    admin = org["client"]
    gated, ungated = _gated(admin), admin.post("/api/v1/projects", json={"name": "Open"}).json()
    editor = _session(settings, org, f"ed-{org['org_id']}@example.com", ["editor", "admin"])
    approver = _session(settings, org, f"ap-{org['org_id']}@example.com", ["approver"])
    workflow_id = _workflow(editor, gated)
    request = editor.post(f"/api/v1/workflows/{workflow_id}/activate").json()
    assert approver.post(f"/api/v1/change_requests/{request['id']}/approve").status_code == 200
    assert editor.patch(f"/api/v1/workflows/{workflow_id}", json={"definition": LEAD_QUALIFICATION}).is_success

    for mover in (editor, admin, editor):
        refused = _move(mover, workflow_id, ungated)
        assert _refused_as(refused, 409, "gated-project"), refused.text
    assert admin.get(f"/api/v1/workflows/{workflow_id}").json()["project_id"] == gated["id"]
    assert editor.post(f"/api/v1/workflows/{workflow_id}/activate").status_code == 202, "still reviewed"

    never_active = _workflow(editor, gated)
    assert _refused_as(_move(editor, never_active, ungated), 409, "gated-project")


def test_an_active_workflow_enters_a_gated_project_only_through_review(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    admin = org["client"]
    gated, ungated = _gated(admin), admin.post("/api/v1/projects", json={"name": "Open"}).json()
    editor = _session(settings, org, f"ed-{org['org_id']}@example.com", ["editor"])
    workflow_id = _workflow(editor, ungated)
    assert editor.post(f"/api/v1/workflows/{workflow_id}/activate").status_code == 200, "unreviewed, and active"

    assert _refused_as(_move(editor, workflow_id, gated), 409, "gated-project")
    assert editor.post(f"/api/v1/workflows/{workflow_id}/deactivate").status_code == 200
    assert _move(editor, workflow_id, gated).status_code == 200, "an inactive workflow may enter"
    assert editor.post(f"/api/v1/workflows/{workflow_id}/activate").status_code == 202


def test_a_workflow_with_an_open_change_request_stays_where_the_request_was_opened(
    org_factory: Any, settings: Settings
) -> None:
    org = org_factory()
    admin = org["client"]
    first, second = (admin.post("/api/v1/projects", json={"name": name}).json() for name in ("One", "Two"))
    agent, _ = _key(admin_session(settings, org), settings, role="editor", agent=True)
    workflow_id = _workflow(agent, first)
    request = agent.post(f"/api/v1/workflows/{workflow_id}/activate").json()
    assert _refused_as(_move(admin, workflow_id, second), 409, "change-request-open")
    assert admin.post(f"/api/v1/change_requests/{request['id']}/cancel").status_code == 200
    assert _move(admin, workflow_id, second).status_code == 200


def test_moves_reach_only_projects_the_caller_may_touch(org_factory: Any, settings: Settings) -> None:
    org, other = org_factory(), org_factory()
    admin = org["client"]
    first, second = (admin.post("/api/v1/projects", json={"name": name}).json() for name in ("One", "Two"))
    scoped, _ = _key(admin_session(settings, org), settings, role="editor", project_id=first["id"])
    workflow_id = _workflow(scoped, first)
    assert _move(scoped, workflow_id, second).status_code == 404, "outside the key's project"
    assert _move(admin, workflow_id, {"id": other["project_id"]}).status_code == 404, "another org's project"
    assert _move(other["client"], workflow_id, {"id": other["project_id"]}).status_code == 404
    assert admin.get(f"/api/v1/workflows/{workflow_id}").json()["project_id"] == first["id"]


def test_approvals_and_change_requests_stay_in_the_project_they_were_opened_in(
    org_factory: Any, settings: Settings
) -> None:
    """A project-scoped key gets the same answer from the list and from the item, after the workflow
    moved away: the records keep the project they were opened in."""
    org = org_factory()
    admin = org["client"]
    first, second = (admin.post("/api/v1/projects", json={"name": name}).json() for name in ("One", "Two"))
    agent, _ = _key(admin_session(settings, org), settings, role="editor", agent=True)
    workflow_id = _workflow(agent, first, lead_qualification_with_approval())
    request = agent.post(f"/api/v1/workflows/{workflow_id}/activate").json()
    assert admin.post(f"/api/v1/change_requests/{request['id']}/cancel").status_code == 200
    approval = control_plane.open_approval(settings, org["org_id"], workflow_id, ["role:approver"])
    assert _move(admin, workflow_id, second).status_code == 200

    issuer = admin_session(settings, org)
    for project, sees in ((first, True), (second, False)):
        reader, _ = _key(issuer, settings, role="viewer", project_id=project["id"])
        for path, record in (("approvals", approval), ("change_requests", request["id"])):
            listed = [item["id"] for item in reader.get(f"/api/v1/{path}").json()["items"]]
            one = reader.get(f"/api/v1/{path}/{record}")
            assert (record in listed, one.status_code) == (sees, 200 if sees else 404), (path, project["name"])
    approver = _session(settings, org, f"ap-{org['org_id']}@example.com", ["approver"])
    decided = approver.post(f"/api/v1/approvals/{approval}/approve")
    assert decided.status_code == 200 and decided.json()["project_id"] == first["id"], decided.text


def test_a_project_holding_change_requests_or_approvals_is_not_deleted(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    admin = org["client"]
    agent, _ = _key(admin_session(settings, org), settings, role="editor", agent=True)
    with_request, with_approval = (admin.post("/api/v1/projects", json={"name": n}).json() for n in ("CR", "Apr"))
    workflow_id = _workflow(agent, with_request)
    request = agent.post(f"/api/v1/workflows/{workflow_id}/activate").json()
    assert admin.post(f"/api/v1/change_requests/{request['id']}/cancel").status_code == 200
    assert _move(admin, workflow_id, {"id": org["project_id"]}).status_code == 200
    workflow_id = _workflow(admin, with_approval, lead_qualification_with_approval())
    control_plane.open_approval(settings, org["org_id"], workflow_id, ["role:approver"])
    assert _move(admin, workflow_id, {"id": org["project_id"]}).status_code == 200

    for project in (with_request, with_approval):
        refused = admin.delete(f"/api/v1/projects/{project['id']}")
        assert _refused_as(refused, 409, "project-has-history"), refused.text
        assert admin.get(f"/api/v1/projects/{project['id']}").status_code == 200


def test_deciding_a_change_request_while_its_workflow_is_edited_never_deadlocks(
    org_factory: Any, settings: Settings
) -> None:
    """Approving (request, version, workflow) and editing (workflow, version) take their locks in one
    order, so neither waits for the other in a cycle that PostgreSQL breaks with an error (a 500)."""
    org = org_factory()
    gated = _gated(org["client"])
    tokens = [
        _login(settings, org, f"{name}-{org['org_id']}@example.com", roles)[0]
        for name, roles in (("ed", ["editor"]), ("ap", ["approver"]), ("bo", ["approver"]))
    ]
    workflow_id = _workflow(_client(settings, tokens[0]), gated)

    async def rounds() -> list[tuple[list[int], list[int]]]:
        editor, *approvers = (
            httpx.AsyncClient(base_url=settings.api_url, headers={"Authorization": f"Bearer {t}"}, timeout=30)
            for t in tokens
        )
        seen = []
        for _ in range(ROUNDS):
            request = (await editor.post(f"/api/v1/workflows/{workflow_id}/activate")).json()
            decisions = asyncio.gather(
                *(approver.post(f"/api/v1/change_requests/{request['id']}/approve") for approver in approvers)
            )
            edit = {"definition": LEAD_QUALIFICATION}
            edits = asyncio.gather(*(editor.patch(f"/api/v1/workflows/{workflow_id}", json=edit) for _ in "abc"))
            decided, edited = await asyncio.gather(decisions, edits)
            seen.append((sorted(a.status_code for a in decided), [a.status_code for a in edited]))
        for client in (editor, *approvers):
            await client.aclose()
        return seen

    assert asyncio.run(rounds()) == [([200, 409], [200, 200, 200])] * ROUNDS, "one decision wins, every edit lands"
