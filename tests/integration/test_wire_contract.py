"""Any standard Kafka client holding only the .avsc file can produce an event the pipeline accepts."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import SerializingProducer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import StringSerializer

from drippulse.settings import Settings
from processors import ids
from processors.templates import LEAD_QUALIFICATION
from streams import topics
from streams.runtime.schema_registry import SCHEMA_DIR
from tests.integration.helpers import activate_workflow, count_rows, wait_for_executions

pytestmark = pytest.mark.stack


def test_plain_confluent_producer_with_only_the_avsc_file(
    qualifier: Any, api_server: Any, settings: Settings, org_factory: Any
) -> None:
    org = org_factory("Interop Co")
    workflow = activate_workflow(org["client"], "LQ", LEAD_QUALIFICATION)
    registry = SchemaRegistryClient({"url": f"{settings.api_url}/schema-registry"})
    producer = SerializingProducer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "key.serializer": StringSerializer("utf_8"),
            "value.serializer": AvroSerializer(registry, (SCHEMA_DIR / "inbound_event.avsc").read_text()),
        }
    )
    event = {
        "event_id": "interop-1",
        "org_id": org["org_id"],
        "event_type": "LEAD_CREATED",
        "occurred_at_ms": int(time.time() * 1000),
        "source": "third-party",
        "lead": {
            "lead_id": "interop-lead",
            "email": "grace@navy.mil",
            "title": "Director of Engineering",
            "employees": 900,
            "country": "US",
            "attributes": {},
        },
    }
    producer.produce(topics.topic_name(topics.INBOUND_EVENTS, settings.topic_prefix), key=org["org_id"], value=event)
    assert producer.flush(10) == 0

    wait_for_executions(api_server, org["org_id"], 1, timeout_s=60)
    assert count_rows(api_server, org["org_id"]) == (1, 1)
    stored = org["client"].get(f"/api/v1/executions/{ids.execution_id('interop-1', workflow['id'], 1)}").json()
    assert (stored["lead_id"], stored["tier"], stored["score"]) == ("interop-lead", "B", 50)


def test_registry_refuses_foreign_schemas(api_server: Any, settings: Settings) -> None:
    registry = SchemaRegistryClient({"url": f"{settings.api_url}/schema-registry"})
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    foreign = '{"type": "record", "name": "Other", "fields": [{"name": "x", "type": "int"}]}'
    with pytest.raises(SchemaRegistryError):
        registry.register_schema("drip.events.inbound-value", Schema(foreign, "AVRO"))
