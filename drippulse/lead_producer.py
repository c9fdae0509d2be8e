"""Pushes synthetic lead events straight onto drip.events.inbound, as a high-volume producer would."""

from __future__ import annotations

import random
from collections.abc import Callable

from drippulse.settings import Settings
from drippulse.synthetic import lead_event
from streams import topics
from streams.runtime.kafka import make_producer, produce_waiting
from streams.runtime.schema_registry import make_registry
from streams.runtime.serde import AvroSerde


def produce_leads(
    settings: Settings,
    org_ids: list[str],
    count: int,
    seed: int = 7,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """Produces `count` lead.created events spread over `org_ids`, then waits for every ack."""
    name = topics.topic_name(topics.INBOUND_EVENTS, settings.topic_prefix)
    serde = AvroSerde(topics.INBOUND_EVENTS, name, make_registry(settings.schema_registry_url))
    producer = make_producer(settings.kafka)
    rng = random.Random(seed)
    step = max(1, count // 100)
    for n in range(count):
        org_id = org_ids[n % len(org_ids)]
        record = lead_event(rng, org_id, n)
        produce_waiting(producer, name, serde.encode(record), org_id.encode())
        if on_progress is not None and (n + 1) % step == 0:
            producer.poll(0)
            on_progress(step)
    if on_progress is not None and count % step:
        on_progress(count % step)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} lead events were not acknowledged by the broker")
