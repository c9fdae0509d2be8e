"""Shared steps of the outbound delivery tests: subscriptions and connections aimed at local servers,
messages and commands put on their topics as the qualifier would."""

from __future__ import annotations

import time
from typing import Any

import orjson
from confluent_kafka import Producer

from drippulse.settings import Settings
from streams import topics
from tests import control_plane
from tests.stack import serde_for
from tests.webhook_receiver import Receiver

PUBLIC_URL = "https://93.184.216.34/hooks/drippulse"


def subscribe(org: dict[str, Any], settings: Settings, receiver: Receiver, event_types: list[str] | None = None) -> str:
    """Creates a subscription through the API, then points it at the local receiver.

    The API refuses loopback URLs (the SSRF guard, tested elsewhere), so the record is created with a
    public URL and its URL then changed in the control plane: the same record a loopback-allowing dev
    setup would hold.
    """
    created = org["client"].post("/api/v1/webhooks", json={"url": PUBLIC_URL, "event_types": event_types or []})
    assert created.status_code == 201, created.text
    body = created.json()
    receiver.secrets.append(body["secret"])
    control_plane.repoint_webhook(settings, org["org_id"], body["id"], receiver.url)
    return str(body["id"])


def produce_records(settings: Settings, topic: topics.Topic, org_id: str, records: list[dict[str, Any]]) -> None:
    serde = serde_for(topic, settings)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for record in records:
        producer.produce(topics.topic_name(topic, settings.topic_prefix), serde.encode(record), org_id.encode())
    assert producer.flush(30) == 0


def produce_messages(settings: Settings, org_id: str, count: int, event_type: str = "lead.qualified") -> list[str]:
    """Puts `count` notifications on drip.webhooks.deliveries, as the qualifier would; their ids."""
    now = int(time.time() * 1000)
    records = []
    for index in range(count):
        message_id = f"msg_{org_id}_{index}"
        payload = {"type": event_type, "timestamp": "2026-11-28T00:00:00Z", "data": {"index": index}}
        record = {
            "message_id": message_id,
            "org_id": org_id,
            "execution_id": f"exec-{index}",
            "event_type": event_type,
            "payload_json": orjson.dumps(payload).decode(),
            "created_at_ms": now,
        }
        records.append(record)
    produce_records(settings, topics.WEBHOOK_DELIVERIES, org_id, records)
    return [r["message_id"] for r in records]
