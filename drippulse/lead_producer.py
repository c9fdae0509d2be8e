"""Pushes synthetic lead events straight onto drip.events.inbound, as a high-volume producer would."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Any

from drippulse.settings import Settings
from drippulse.synthetic import conversion_probability, lead_event, outcome_event
from streams import topics
from streams.runtime.kafka import make_producer, produce_waiting
from streams.runtime.schema_registry import make_registry
from streams.runtime.serde import AvroSerde


def _leads(org_ids: list[str], count: int, seed: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for n in range(count):
        yield lead_event(rng, org_ids[n % len(org_ids)], n)


def produce_leads(
    settings: Settings,
    org_ids: list[str],
    count: int,
    seed: int = 7,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """Produces `count` lead.created events spread over `org_ids`, then waits for every ack."""
    _produce(settings, _leads(org_ids, count, seed), count, on_progress)


def produce_outcomes(
    settings: Settings,
    org_ids: list[str],
    count: int,
    share: float,
    seed: int = 7,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """For a random `share` of the leads `produce_leads` made with the same arguments, in random
    order, an outcome drawn from the synthetic truth (drippulse/synthetic.py): converted with the
    probability its features give it, else disqualified. Returns how many."""
    rng = random.Random(seed + 1)
    chosen = [lead for lead in _leads(org_ids, count, seed) if rng.random() < share]
    rng.shuffle(chosen)
    outcomes = (
        outcome_event(lead, rng.random() < conversion_probability(lead["lead"]), int(time.time() * 1000))
        for lead in chosen
    )
    _produce(settings, outcomes, len(chosen), on_progress)
    return len(chosen)


def _produce(
    settings: Settings, records: Iterator[dict[str, Any]], count: int, on_progress: Callable[[int], None] | None
) -> None:
    name = topics.topic_name(topics.INBOUND_EVENTS, settings.topic_prefix)
    serde = AvroSerde(topics.INBOUND_EVENTS, name, make_registry(settings.schema_registry_url))
    producer = make_producer(settings.kafka)
    step = max(1, count // 100)
    for n, record in enumerate(records):
        produce_waiting(producer, name, serde.encode(record), record["org_id"].encode())
        if on_progress is not None and (n + 1) % step == 0:
            producer.poll(0)
            on_progress(step)
    if on_progress is not None and count % step:
        on_progress(count % step)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} events were not acknowledged by the broker")
