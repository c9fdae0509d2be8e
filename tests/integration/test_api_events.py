"""POST /api/v1/events: validation with index and field, batches, dedup of client event ids."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from api.event_dedup import EventIdDedup
from api.event_publisher import EventPublisher
from api.models import EventIn
from api.problems import Problem
from api.routes.events import accept_events
from drippulse.settings import Settings
from streams import topics
from streams.runtime.dlq import DeadLetters
from streams.runtime.kafka import make_producer
from streams.state import redis_clients
from tests.stack import read_topic, serde_for

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


def test_a_batch_with_an_event_over_the_record_limit_produces_nothing_and_keeps_no_id(
    org_factory: Any, settings: Settings
) -> None:
    """[a, 2 MB event, c]: refused whole, naming item 1, before anything is produced or claimed, so
    the client's retry without the big event is accepted in full, not taken for duplicates."""
    org = org_factory()
    a, c = {**LEAD, "event_id": "a"}, {**LEAD, "event_id": "c"}
    big = {**LEAD, "event_id": "big", "lead": {"lead_id": "big", "attributes": {"notes": "x" * 2_000_000}}}
    refused = org["client"].post("/api/v1/events", json=[a, big, c])
    assert refused.status_code == 413, refused.text
    assert [(e["index"], e["field"]) for e in refused.json()["errors"]] == [(1, "$[1]")]
    assert read_topic(settings, topics.INBOUND_EVENTS, key=org["org_id"]) == []

    retried = org["client"].post("/api/v1/events", json=[a, c])
    assert retried.status_code == 202 and retried.json()["accepted"] == 2, retried.text
    produced = read_topic(settings, topics.INBOUND_EVENTS, key=org["org_id"])
    assert sorted(r["event_id"] for r in produced) == ["a", "c"]


def test_an_event_the_producer_refuses_releases_every_claimed_id(settings: Settings, stack: Any) -> None:
    """Whatever produce() raises (here: a record over this producer's message.max.bytes), the batch's
    client ids leave the dedup window again, so the client's retry is not answered 'duplicate'."""
    name = topics.topic_name(topics.INBOUND_EVENTS, settings.topic_prefix)
    org_id = f"org_{uuid.uuid4().hex[:12]}"
    events = [
        EventIn.model_validate(
            {**LEAD, "event_id": f"e{n}", "lead": {"lead_id": f"l{n}", "attributes": {"notes": "x" * size}}}
        )
        for n, size in enumerate([10, 5000, 10])
    ]

    async def scenario() -> list[bool]:
        client = redis_clients.connect_async(settings.redis_url)
        dedup = EventIdDedup(client, 60)
        producer = make_producer(settings.kafka, **{"message.max.bytes": 2000})
        dead_letters = DeadLetters(serde_for(topics.EVENTS_DLQ, settings), "unused", "drippulse-api")
        publisher = EventPublisher(producer, name, serde_for(topics.INBOUND_EVENTS, settings), 5, dead_letters)
        try:
            with pytest.raises(Problem) as refused:
                await accept_events(org_id, events, dedup, publisher)
            assert refused.value.status == 503
            return await dedup.claim(org_id, ["e0", "e1", "e2"])
        finally:
            publisher.close()
            await client.aclose()

    assert asyncio.run(scenario()) == [True, True, True], "no id of the failed batch is still claimed"
