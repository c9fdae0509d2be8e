"""Manual runs and `Idempotency-Key`: a retried run (after a 503, a lost answer, a double click) is
the same run, with real side effects once per lead; the key belongs to one org and one workflow."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from drippulse.settings import Settings
from processors.templates import LEAD_QUALIFICATION
from streams import topics
from tests.integration.helpers import activate_workflow, admin_session
from tests.stack import ApiServer, WorkerProcess, read_topic, wait_until

pytestmark = pytest.mark.stack


@pytest.fixture
def org(org_factory: Any, qualifier: WorkerProcess) -> dict[str, Any]:
    created: dict[str, Any] = org_factory()
    created["workflow"] = activate_workflow(created["client"], "LQ", LEAD_QUALIFICATION)
    return created


def _leads(*names: str) -> dict[str, Any]:
    return {"leads": [{"lead_id": name, "email": f"{name}@initech.net", "title": "VP Sales"} for name in names]}


def _run(client: httpx.Client, workflow_id: str, body: dict[str, Any], key: str | bytes | None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post(f"/api/v1/workflows/{workflow_id}/runs", json=body, headers=headers)


def _executions(client: httpx.Client, workflow_id: str, count: int) -> list[dict[str, Any]]:
    """The workflow's executions once there are `count`, read back through the API (ClickHouse)."""

    def found() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = client.get(
            "/api/v1/executions", params={"workflow_id": workflow_id, "limit": 1000}
        ).json()["items"]
        return items if len(items) >= count else None

    executions: list[dict[str, Any]] = wait_until(found, 60, f"{count} executions")
    return executions


def _published(settings: Settings, org_id: str, event_ids: set[str]) -> Counter[str]:
    """How often each of the run's events went onto the inbound topic."""
    inbound = read_topic(settings, topics.INBOUND_EVENTS, key=org_id)
    return Counter(e["event_id"] for e in inbound if e["event_id"] in event_ids)


def test_the_same_key_and_body_sent_twice_is_one_run_with_one_execution_per_lead(
    org: dict[str, Any], settings: Settings, api_server: ApiServer
) -> None:
    admin, workflow_id = org["client"], org["workflow"]["id"]
    key, body = str(uuid.uuid4()), _leads("ada", "bob", "cyd")
    first = _run(admin, workflow_id, body, key)
    assert first.status_code == 202, first.text
    again = _run(admin, workflow_id, body, key)
    assert again.status_code == 202, again.text
    assert again.json() == first.json(), "the same run: run_id, version and event ids"
    assert again.headers.get("Idempotent-Replayed") == "true" and "Idempotent-Replayed" not in first.headers
    event_ids = set(first.json()["event_ids"])
    executions = _executions(admin, workflow_id, 3)
    assert sorted(e["lead_id"] for e in executions) == ["ada", "bob", "cyd"], "one execution per lead"
    assert {e["event_id"] for e in executions} == event_ids
    assert _published(settings, org["org_id"], event_ids) == dict.fromkeys(event_ids, 1), "produced once"


def test_a_key_sent_again_with_another_body_is_refused_and_runs_nothing(
    org: dict[str, Any], settings: Settings, api_server: ApiServer
) -> None:
    admin, workflow_id = org["client"], org["workflow"]["id"]
    key = str(uuid.uuid4())
    assert _run(admin, workflow_id, _leads("ada"), key).status_code == 202
    reused = _run(admin, workflow_id, _leads("mallory"), key)
    assert reused.status_code == 422, reused.text
    assert reused.json()["type"].endswith("idempotency-key-reused")
    assert _run(admin, workflow_id, {**_leads("ada"), "event_type": "lead.created"}, key).status_code == 422
    _executions(admin, workflow_id, 1)
    inbound = read_topic(settings, topics.INBOUND_EVENTS, key=org["org_id"])
    assert [e["lead"]["lead_id"] for e in inbound if e["trigger"] == "MANUAL"] == ["ada"]


def test_another_org_using_the_same_key_gets_a_run_of_its_own(
    org: dict[str, Any], org_factory: Any, settings: Settings, api_server: ApiServer
) -> None:
    other: dict[str, Any] = org_factory()
    other_workflow = activate_workflow(other["client"], "LQ", LEAD_QUALIFICATION)
    key, body = str(uuid.uuid4()), _leads("ada")
    mine = _run(org["client"], org["workflow"]["id"], body, key)
    theirs = _run(other["client"], other_workflow["id"], body, key)
    assert mine.status_code == theirs.status_code == 202
    assert "Idempotent-Replayed" not in theirs.headers
    assert mine.json()["run_id"] != theirs.json()["run_id"]
    assert not set(mine.json()["event_ids"]) & set(theirs.json()["event_ids"])
    assert [e["lead_id"] for e in _executions(other["client"], other_workflow["id"], 1)] == ["ada"]
    assert [e["lead_id"] for e in _executions(org["client"], org["workflow"]["id"], 1)] == ["ada"]


def test_concurrent_requests_with_one_key_are_one_run_with_one_execution_per_lead(
    org: dict[str, Any], settings: Settings, api_server: ApiServer
) -> None:
    admin, workflow_id = org["client"], org["workflow"]["id"]
    key, body = str(uuid.uuid4()), _leads("ada", "bob")
    start = threading.Barrier(6)
    answers: list[httpx.Response] = []

    def send() -> None:
        start.wait()
        answers.append(_run(admin, workflow_id, body, key))

    senders = [threading.Thread(target=send) for _ in range(6)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert [a.status_code for a in answers] == [202] * 6, [a.text for a in answers]
    assert len({(a.json()["run_id"], tuple(a.json()["event_ids"])) for a in answers}) == 1
    executions = _executions(admin, workflow_id, 2)
    rows = api_server.clickhouse.query(
        "SELECT lead_id, uniqExact(execution_id) AS n FROM drippulse.executions FINAL "
        "WHERE org_id = {org:String} GROUP BY lead_id ORDER BY lead_id",
        {"org": org["org_id"]},
    )
    assert [(r["lead_id"], int(r["n"])) for r in rows] == [("ada", 1), ("bob", 1)]
    assert {e["event_id"] for e in executions} == set(answers[0].json()["event_ids"])


def test_a_refused_request_neither_runs_nor_binds_its_key(
    org: dict[str, Any], settings: Settings, api_server: ApiServer
) -> None:
    """A key scoped to another project (404) and a role without `workflows.run` (403) are refused
    before the key is looked at, so the key stays free for the request its owner makes."""
    admin, workflow_id = org["client"], org["workflow"]["id"]
    project = admin.post("/api/v1/projects", json={"name": f"elsewhere-{uuid.uuid4().hex[:6]}"}).json()["id"]
    issuer = admin_session(settings, org)
    scoped = issuer.post("/api/v1/api_keys", json={"name": "scoped", "role": "admin", "project_id": project})
    viewer = issuer.post("/api/v1/api_keys", json={"name": "viewer", "role": "viewer"})
    key = str(uuid.uuid4())
    for credential, status in ((scoped.json()["key"], 404), (viewer.json()["key"], 403)):
        caller = httpx.Client(base_url=settings.api_url, headers={"Authorization": f"Bearer {credential}"})
        assert _run(caller, workflow_id, _leads("mallory"), key).status_code == status
    owners = _run(admin, workflow_id, _leads("ada"), key)
    assert owners.status_code == 202 and "Idempotent-Replayed" not in owners.headers
    assert [e["lead_id"] for e in _executions(admin, workflow_id, 1)] == ["ada"]


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "naïve".encode()])
def test_an_unusable_idempotency_key_is_refused_naming_the_header(
    org: dict[str, Any], key: str | bytes, api_server: ApiServer
) -> None:
    refused = _run(org["client"], org["workflow"]["id"], _leads("ada"), key)
    assert refused.status_code == 422, refused.text
    assert [(e["in"], e["field"]) for e in refused.json()["errors"]] == [("header", "Idempotency-Key")]


def test_a_lead_named_twice_in_one_run_is_refused(org: dict[str, Any], api_server: ApiServer) -> None:
    """Event ids are made from the run and the lead: a lead given twice would be one event."""
    body = {"leads": _leads("ada")["leads"] + [{"lead_id": "ada", "title": "CEO"}]}
    refused = _run(org["client"], org["workflow"]["id"], body, str(uuid.uuid4()))
    assert refused.status_code == 422 and "ada" in refused.text


def test_the_runs_idempotency_key_is_declared_in_the_openapi_document(
    api_server: ApiServer, settings: Settings
) -> None:
    document = httpx.get(f"{settings.api_url}/openapi.json").json()
    parameters = document["paths"]["/api/v1/workflows/{workflow_id}/runs"]["post"]["parameters"]
    (header,) = [p for p in parameters if p["in"] == "header"]
    assert header["name"] == "Idempotency-Key" and not header.get("required", False)
    assert "retry" in header["description"].lower()
