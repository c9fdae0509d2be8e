"""Lists of things an organization accumulates come in bounded pages, newest first, with a cursor:
no request reads (or answers) an organization's whole table."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from drippulse.settings import Settings
from processors.templates import LEAD_QUALIFICATION
from tests.integration.helpers import admin_session

pytestmark = pytest.mark.stack


def _pages(client: httpx.Client, path: str, **params: Any) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        answer = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        pages.append([item["id"] for item in answer.json()["items"]])
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            return pages


def _refuses_bad_paging(client: httpx.Client, path: str) -> None:
    assert client.get(path, params={"limit": 501}).status_code == 422, "the page size is bounded"
    assert client.get(path, params={"limit": 0}).status_code == 422
    refused = client.get(path, params={"cursor": "not-a-cursor"})
    assert refused.status_code == 400 and refused.json()["type"].endswith("/bad-cursor")


def test_workflows_are_listed_in_bounded_pages_within_the_callers_scope(org_factory: Any, settings: Settings) -> None:
    org, other = org_factory(), org_factory()
    admin = org["client"]
    project = admin.post("/api/v1/projects", json={"name": "Sales"}).json()
    created = [
        admin.post(
            "/api/v1/workflows",
            json={"name": f"w{n}", "definition": LEAD_QUALIFICATION, "project_id": project["id"] if n % 2 else None},
        ).json()["id"]
        for n in range(5)
    ]
    assert _pages(admin, "/api/v1/workflows", limit=2) == [created[:2:-1], created[2:0:-1], created[:1]]
    in_project = [created[3], created[1]]
    assert _pages(admin, "/api/v1/workflows", limit=1, project_id=project["id"]) == [[w] for w in in_project]
    assert _pages(admin, "/api/v1/workflows", status="active") == [[]]
    issuer = admin_session(settings, org)
    issued = issuer.post("/api/v1/api_keys", json={"name": "s", "role": "viewer", "project_id": project["id"]}).json()
    scoped = httpx.Client(base_url=settings.api_url, headers={"Authorization": f"Bearer {issued['key']}"})
    assert _pages(scoped, "/api/v1/workflows", limit=1) == [[w] for w in in_project]
    assert _pages(other["client"], "/api/v1/workflows") == [[]]
    _refuses_bad_paging(admin, "/api/v1/workflows")


def test_api_keys_are_listed_in_bounded_pages_of_the_callers_org(org_factory: Any, settings: Settings) -> None:
    org, other = org_factory(), org_factory()
    admin = admin_session(settings, org)
    (bootstrap,) = _pages(admin, "/api/v1/api_keys")[0]
    created = [admin.post("/api/v1/api_keys", json={"name": f"k{n}", "role": "viewer"}).json()["id"] for n in range(4)]
    newest_first = [*reversed(created), bootstrap]
    assert _pages(admin, "/api/v1/api_keys", limit=2) == [newest_first[:2], newest_first[2:4], newest_first[4:]]
    others = _pages(admin_session(settings, other), "/api/v1/api_keys")
    assert not set(created) & {key for page in others for key in page}
    _refuses_bad_paging(admin, "/api/v1/api_keys")


def test_the_audit_log_pages_newest_first_and_refuses_a_cursor_of_another_list(org_factory: Any) -> None:
    org = org_factory()
    admin = org["client"]
    for name in ("a", "b", "c"):
        assert admin.post("/api/v1/projects", json={"name": name}).status_code == 201
    pages = _pages(admin, "/api/v1/audit_log", limit=2, action="project.create")
    assert [len(page) for page in pages] == [2, 2], "three projects and the default one"
    ids = [entry for page in pages for entry in page]
    assert ids == sorted(ids, reverse=True)
    for name in ("w1", "w2"):
        admin.post("/api/v1/workflows", json={"name": name, "definition": LEAD_QUALIFICATION})
    cursor = admin.get("/api/v1/workflows", params={"limit": 1}).json()["next_cursor"]
    refused = admin.get("/api/v1/audit_log", params={"cursor": cursor})
    assert refused.status_code == 400 and refused.json()["type"].endswith("/bad-cursor")
