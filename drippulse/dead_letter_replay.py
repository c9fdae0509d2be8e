"""Operators' tools for drip.events.dlq: count what is there, and replay letters once their cause is
fixed (a schema upgrade, a CRM back, a bug fixed) by producing the original key and bytes to their
source topic again. Replays are harmless for what already went through: ids are deterministic and
every consumer deduplicates on them."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from drippulse.settings import Settings
from streams import topics
from streams.runtime.kafka import make_producer, produce_waiting
from streams.runtime.schema_registry import make_registry
from streams.runtime.serde import AvroSerde, DecodeError


@dataclass(frozen=True)
class LetterFilter:
    error_kind: str | None = None
    consumer_group: str | None = None
    org_id: str | None = None
    """Letters whose original key is this org (records are keyed by org id)."""

    def admits(self, letter: dict[str, Any]) -> bool:
        key = (letter["original_key"] or b"").decode("utf-8", "replace")
        return (
            (self.error_kind is None or letter["error_kind"] == self.error_kind)
            and (self.consumer_group is None or letter["consumer_group"] == self.consumer_group)
            and (self.org_id is None or key == self.org_id)
        )


def letters(settings: Settings, quiet_s: float = 2.0) -> Iterator[dict[str, Any]]:
    """Every letter on the topic, from its start, until it stays quiet for `quiet_s`. A throwaway
    consumer with no group offsets: reading commits nothing and moves nothing."""
    name = topics.topic_name(topics.EVENTS_DLQ, settings.topic_prefix)
    serde = AvroSerde(topics.EVENTS_DLQ, name, make_registry(settings.schema_registry_url))
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"drippulse-dlq-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in partitions])
        last = time.monotonic()
        while time.monotonic() - last < quiet_s:
            for message in consumer.consume(1000, 0.2):
                if message.error() is not None:
                    continue
                last = time.monotonic()
                try:
                    yield serde.decode(message.value())
                except DecodeError:
                    continue
    finally:
        consumer.close()


def count(settings: Settings, where: LetterFilter) -> Counter[tuple[str, str, str]]:
    """Letters per (source topic, consumer group, error kind)."""
    return Counter(
        (letter["source_topic"], letter["consumer_group"], letter["error_kind"])
        for letter in letters(settings)
        if where.admits(letter)
    )


def replay(settings: Settings, where: LetterFilter, dry_run: bool) -> int:
    """Produces each admitted letter's original key and value to its source topic; how many."""
    producer = None if dry_run else make_producer(settings.kafka)
    replayed = 0
    for letter in letters(settings):
        if not where.admits(letter) or letter["original_value"] is None:
            continue
        if producer is not None:
            # null stays null: a producer may send no key, and an empty one would fail the key check
            produce_waiting(producer, letter["source_topic"], letter["original_value"], letter["original_key"])
        replayed += 1
    if producer is not None and producer.flush(60):
        raise RuntimeError("the broker did not acknowledge every replayed record within 60 s")
    return replayed
