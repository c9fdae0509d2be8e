"""Property-based test of the whole API against its own OpenAPI document (schemathesis).

Every operation gets boundary cases (schemathesis' coverage phase), the document's examples where
it has any, and random valid and invalid requests, sent with one organization's Admin key. Each answer must not be
a server error and must match what the document declares: its status code, its media type, its
headers and its body's schema. `positive_data_acceptance` is left out on purpose: the API refuses
some requests the schema alone allows (an event's payload must match its type, ids must exist).

Random ids find nothing, so the organization is given one resource of each kind first (and rows in
ClickHouse), and a path parameter is either random or the id of that resource. Random text seldom
holds the characters the stores treat specially, so one string of a request (path, query or body)
is often given one of them.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from drippulse.settings import Settings
from processors.templates import LEAD_QUALIFICATION
from tests.integration.helpers import admin_session

pytestmark = pytest.mark.stack

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SEED = 20_240_611
"""Fixed, so CI sends the same requests on every run and a failure reproduces."""
HARD_CHARACTERS = ["\x00", "\\", "\t", "\n"]
"""PostgreSQL refuses NUL in text; ClickHouse's escaped parameter format gives the others a meaning."""
PUBLIC_URL = "https://93.184.216.34/hooks/drippulse"
"""A public address literal: the SSRF guard accepts it without DNS, and nothing is sent to it here."""


def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (201, 202), response.text
    body: dict[str, Any] = response.json()
    return body


def _resources(org: dict[str, Any], admin: httpx.Client, clickhouse: Any) -> dict[str, Any]:
    """One of each resource the paths name, by path parameter. Deletions never get these ids (see
    `_known_or_random`), so every operation after a DELETE still finds them. What only a person
    does (asking for a reviewed change, issuing a key, inviting) is done by `admin`'s person."""
    client, org_id = org["client"], org["org_id"]
    workflow = _created(client.post("/api/v1/workflows", json={"name": "Fuzzed", "definition": LEAD_QUALIFICATION}))
    guarded = _created(
        client.post(
            "/api/v1/projects",
            json={"name": "Four eyes", "policy": {"workflow_activation_requires_approval": True}},
        )
    )
    proposed = _created(
        client.post(
            "/api/v1/workflows",
            json={"name": "Proposed", "project_id": guarded["id"], "definition": LEAD_QUALIFICATION},
        )
    )
    change_request = _created(admin.post(f"/api/v1/workflows/{proposed['id']}/activate", json={"reason": "fuzz"}))
    webhook = _created(client.post("/api/v1/webhooks", json={"url": PUBLIC_URL}))
    delivery = _created(client.post(f"/api/v1/webhooks/{webhook['id']}/test"))
    source = _created(client.post("/api/v1/inbound_sources", json={"name": "Forms"}))
    connection = _created(
        client.post("/api/v1/integration_connections", json={"type": "rest", "name": "CRM", "base_url": PUBLIC_URL})
    )
    key = _created(admin.post("/api/v1/api_keys", json={"name": "Second", "role": "viewer"}))
    invitation = _created(
        admin.post("/api/v1/members/invitations", json={"email": "fuzz@example.com", "roles": ["editor"]})
    )
    member = admin.post(
        "/api/v1/auth/invitations/accept", json={"token": invitation["token"], "password": "a long password"}
    )
    assert member.status_code == 200, member.text
    now = time.time()
    clickhouse.insert_rows(
        "executions",
        [
            {
                "execution_id": "exe_fuzzed",
                "org_id": org_id,
                "workflow_id": workflow["id"],
                "workflow_version": 1,
                "event_id": "evt_fuzzed",
                "event_type": "lead.created",
                "lead_id": "lead_fuzzed",
                "status": "completed",
                "status_reason": "",
                "score": 40,
                "score_breakdown": {"title": 40},
                "tier": "B",
                "owner": "ada",
                "routing_reason": "round robin",
                "actions": ["crm_update"],
                "logs": ["scored"],
                "decisions": ["1:score:40"],
                "event_occurred_at": now - 1,
                "evaluated_at": now,
            }
        ],
    )
    clickhouse.insert_rows(
        "webhook_attempts",
        [
            {
                "attempt_id": "att_fuzzed",
                "delivery_id": delivery["delivery_id"],
                "org_id": org_id,
                "webhook_id": webhook["id"],
                "message_id": delivery["message_id"],
                "event_type": "webhook.test",
                "attempt": 1,
                "url": PUBLIC_URL,
                "result": "retrying",
                "status_code": 503,
                "latency_ms": 12,
                "error": "unavailable",
                "response_excerpt": "",
                "attempted_at": now,
                "next_attempt_at": now + 60,
            }
        ],
    )
    clickhouse.insert_rows(
        "crm_command_results",
        [
            {
                "result_id": f"cmd_fuzzed:{connection['id']}",
                "command_id": "cmd_fuzzed",
                "org_id": org_id,
                "connection_id": connection["id"],
                "connector": "rest",
                "execution_id": "exe_fuzzed",
                "lead_id": "lead_fuzzed",
                "operation": "upsert_contact",
                "status": "failed",
                "attempts": 4,
                "status_code": 400,
                "error": "bad request",
                "crm_object_id": None,
                "applied_at": now,
            }
        ],
    )
    return {
        "workflow_id": workflow["id"],
        "version": 1,
        "project_id": guarded["id"],
        "request_id": change_request["id"],
        "webhook_id": webhook["id"],
        "delivery_id": delivery["delivery_id"],
        "source_id": source["id"],
        "connection_id": connection["id"],
        "key_id": key["id"],
        "user_id": member.json()["user"]["id"],
        "invitation_id": invitation["id"],
        "execution_id": "exe_fuzzed",
        "result_id": f"cmd_fuzzed:{connection['id']}",
    }


@pytest.fixture
def api_schema(request: pytest.FixtureRequest, settings: Settings, org_factory: Any, api_server: Any) -> Any:
    """The served document, every request authenticated with the Admin key of one organization
    (the parametrized test is one pytest item, so this runs once for every operation)."""
    # schemathesis 4.32 reads the test item's `_nodeid`, which pytest 9.2 renamed to `_id`.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    org = org_factory("OpenAPI properties")
    known = _resources(org, admin_session(settings, org), api_server.clickhouse)
    config = schemathesis.Config(seed=SEED)
    config.projects.default.update(headers={"Authorization": f"Bearer {org['key']}"}, request_timeout=30)
    config.projects.default.generation.update(deterministic=True)
    loaded = schemathesis.openapi.from_url(f"{settings.api_url}/openapi.json", config=config)

    @loaded.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> st.SearchStrategy[Any]:
        return _known_or_random(context.operation.method, path_parameters, known).flatmap(_with_a_hard_character)

    @loaded.hook
    def flatmap_query(context: Any, query: dict[str, Any]) -> st.SearchStrategy[Any]:
        return _with_a_hard_character(query)

    @loaded.hook
    def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
        return _with_a_hard_character(body)

    return loaded


def _known_or_random(method: str, generated: dict[str, Any], known: dict[str, Any]) -> st.SearchStrategy[Any]:
    """The generated parameters, or the same with every one naming a known resource replaced by its
    id. A DELETE only ever gets random ids: deleting the resource would leave every operation after
    it (they run in the document's order) with a 404 to test."""
    if method.upper() == "DELETE" or not generated:
        return st.just(generated)
    real = {name: known.get(name, value) for name, value in generated.items()}
    return st.sampled_from([generated, real])


def _with_a_hard_character(value: Any) -> st.SearchStrategy[Any]:
    """The value, or a copy in which one of its strings has a hard character in the middle."""
    count = _count_strings(value)
    if not count:
        return st.just(value)
    hardened = st.builds(_harden, st.just(value), st.integers(0, count - 1), st.sampled_from(HARD_CHARACTERS))
    return st.one_of(st.just(value), hardened)


def _count_strings(value: Any) -> int:
    if isinstance(value, str):
        return 1
    if isinstance(value, dict):
        return sum(_count_strings(item) for item in value.values())
    if isinstance(value, list):
        return sum(_count_strings(item) for item in value)
    return 0


def _harden(value: Any, index: int, character: str) -> Any:
    """A copy of `value` whose `index`-th string (depth first) has its middle character replaced."""
    remaining = index

    def walk(item: Any) -> Any:
        nonlocal remaining
        if isinstance(item, str):
            remaining -= 1
            if remaining != -1:
                return item
            middle = len(item) // 2
            return item[:middle] + character + item[middle + 1 :]
        if isinstance(item, dict):
            return {key: walk(child) for key, child in item.items()}
        if isinstance(item, list):
            return [walk(child) for child in item]
        return item

    return walk(value)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_every_operation_conforms(case: Any) -> None:
    case.call_and_validate(checks=CHECKS)
