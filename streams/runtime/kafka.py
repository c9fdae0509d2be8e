"""The one place DripPulse configures confluent-kafka clients and creates topics."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streams.topics import ALL_TOPICS, topic_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaConfig:
    """Where the cluster is, and how DripPulse's topics are named and created on it."""

    bootstrap_servers: str
    topic_prefix: str = ""
    partitions: int = 12
    replication: int = 1


def producer_config(kafka: KafkaConfig, **overrides: Any) -> dict[str, Any]:
    """Idempotent producer: a retried send never duplicates a record on the broker."""
    return {
        "bootstrap.servers": kafka.bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        **overrides,
    }


def make_batch_producer(kafka: KafkaConfig, **overrides: Any) -> Producer:
    """The batch runtime's producer reports failed deliveries only. It needs to hear of failures,
    and flush() already waits for the rest; a Python report per acknowledged record cost about
    1 µs each, a fifth of producing it."""
    return make_producer(kafka, **{"delivery.report.only.error": True, **overrides})


def produce_waiting(producer: Producer, topic: str, value: bytes, key: bytes | None, **kwargs: Any) -> None:
    """Produces, serving delivery reports while the local queue is full instead of failing."""
    produce_all(producer, [(topic, key, value)], **kwargs)


def produce_all(producer: Producer, records: Iterable[tuple[str, bytes | None, bytes]], **kwargs: Any) -> None:
    """Produces each (topic, key, value) as `produce_waiting` does, in one loop: a batch of 20,000
    records saves a Python call per record. Delivery reports are served only when the local queue is
    full: the batch producer reports failures only, so nothing else accumulates before flush()."""
    produce = producer.produce
    for topic, key, value in records:
        while True:
            try:
                produce(topic, value, key, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)


class DeliveryFailed(RuntimeError):
    """The broker refused some outputs of a batch; the batch is rewound and processed again."""


def deliver_all(producer: Producer, records: Sequence[tuple[str, bytes, bytes]], timeout_s: float = 60) -> None:
    """Produces the records and returns once the broker acknowledged every one; raises
    DeliveryFailed otherwise (the caller must not commit what they came from)."""
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, _: Message) -> None:
        if err is not None:
            failures.append(str(err))

    produce_all(producer, records, on_delivery=on_delivery)
    remaining = producer.flush(timeout_s)
    if remaining:
        failures.append(f"{remaining} records still unacknowledged after {timeout_s:g} s")
    if failures:
        raise DeliveryFailed(f"{len(failures)} deliveries failed, first: {failures[0]}")


def consumer_config(kafka: KafkaConfig, group_id: str, **overrides: Any) -> dict[str, Any]:
    """Manual commits only: the batch runtime commits after every output is acknowledged.

    A 6 s session (the usual broker minimum) bounds both how long a dead worker's partitions stay
    unowned and, on Tansu, how long a new member waits for its assignment (about half of it).
    """
    return {
        "bootstrap.servers": kafka.bootstrap_servers,
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6_000,
        "heartbeat.interval.ms": 500,
        "max.poll.interval.ms": 300_000,
        "fetch.min.bytes": 1,
        "fetch.wait.max.ms": 50,
        **overrides,
    }


def make_producer(kafka: KafkaConfig, **overrides: Any) -> Producer:
    return Producer(producer_config(kafka, **overrides))


def make_consumer(kafka: KafkaConfig, group_id: str, **overrides: Any) -> Consumer:
    return Consumer(consumer_config(kafka, group_id, **overrides))


def ensure_topics(kafka: KafkaConfig, timeout_s: float = 30.0) -> None:
    """Creates every catalog topic that does not exist yet; safe to call from every process."""
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    deadline = time.monotonic() + timeout_s
    while True:
        existing = set(admin.list_topics(timeout=10).topics)
        names = [topic_name(t, kafka.topic_prefix) for t in ALL_TOPICS]
        missing = [name for name in names if name not in existing]
        if not missing:
            return
        futures = admin.create_topics([NewTopic(name, kafka.partitions, kafka.replication) for name in missing])
        for name, future in futures.items():
            try:
                future.result()
                log.info("created topic %s (%d partitions)", name, kafka.partitions)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    if time.monotonic() > deadline:
                        raise
                    log.warning("creating topic %s failed, retrying: %s", name, exc)
                    time.sleep(0.5)
