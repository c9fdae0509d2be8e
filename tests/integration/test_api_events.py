"""POST /api/v1/events: validation with index and field, batches, dedup of client event ids."""

from __future__ import annotations

from typing import Any

import pytest

from drippulse.settings import Settings
from streams import topics
from tests.stack import read_topic

pytestmark = pytest.mark.stack

LEAD = {"event_type": "lead.created", "lead": {"lead_id": "lead-1", "email": "ada@acme.io", "country": "de"}}


def test_single_event_and_batch_are_accepted_and_produced(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    one = org["client"].post("/api/v1/events", json=LEAD)
    assert one.status_code == 202 and one.json()["accepted"] == 1
    batch = org["client"].post("/api/v1/events", json=[{**LEAD, "event_id": f"b-{n}"} for n in range(50)])
    assert batch.status_code == 202 and batch.json()["accepted"] == 50
    produced = read_topic(settings, topics.INBOUND_EVENTS, key=org["org_id"])
    assert len(produced) == 51
    assert {r["lead"]["country"] for r in produced} == {"DE"}
    assert all(r["org_id"] == org["org_id"] and r["event_type"] == "LEAD_CREATED" for r in produced)


def test_invalid_events_get_422_with_index_and_field(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    events = [
        LEAD,
        {"event_type": "lead.exploded", "lead": {"lead_id": "x"}},
        LEAD,
        {"event_type": "lead.created", "lead": {"lead_id": "y", "email": "not-an-email", "employees": -3}},
        {"event_type": "lead.created"},
    ]
    response = org["client"].post("/api/v1/events", json=events)
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith("/validation") and problem["status"] == 422
    found = {(e["index"], e["field"]) for e in problem["errors"]}
    assert {(1, "$[1].event_type"), (3, "$[3].lead.email"), (3, "$[3].lead.employees"), (4, "$[4]")} <= found
    assert "lead: required" in next(e["message"] for e in problem["errors"] if e["index"] == 4)
    assert read_topic(settings, topics.INBOUND_EVENTS, key=org["org_id"]) == [], "nothing of a bad batch is produced"


def test_client_event_ids_are_deduplicated(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    first = (
        org["client"]
        .post(
            "/api/v1/events",
            json=[{**LEAD, "event_id": "same"}, {**LEAD, "event_id": "same"}, {**LEAD, "event_id": "other"}],
        )
        .json()
    )
    assert first["accepted"] == 2 and first["duplicates"] == ["same"]
    again = org["client"].post("/api/v1/events", json={**LEAD, "event_id": "same"}).json()
    assert again == {"accepted": 0, "event_ids": [], "duplicates": ["same"]}
    assert len(read_topic(settings, topics.INBOUND_EVENTS, key=org["org_id"])) == 2
    other_org = org_factory()
    assert other_org["client"].post("/api/v1/events", json={**LEAD, "event_id": "same"}).json()["accepted"] == 1


def test_oversized_and_empty_batches_are_rejected(org_factory: Any) -> None:
    client = org_factory()["client"]
    assert client.post("/api/v1/events", json=[LEAD] * 1001).status_code == 413
    assert client.post("/api/v1/events", json=[]).status_code == 422
    assert (
        client.post("/api/v1/events", content=b"{not json", headers={"content-type": "application/json"}).status_code
        == 422
    )
