"""The model trainer as a real process on the real stack: what it learns is exactly what an
uninterrupted pass over the outcomes learns, through stops, crashes and replays."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from drippulse.devstack import EmbeddedStack
from drippulse.operators import create_org
from drippulse.settings import Settings
from drippulse.synthetic import conversion_probability, lead_event, outcome_event
from drippulse.workers import TRAINER_GROUP
from processors.lead_snapshots import describing
from processors.learned_model import LearnedModel
from streams import topics
from streams.runtime.kafka import make_producer
from streams.state.control_plane import connect
from streams.state.lead_models import ModelStore
from tests.stack import WorkerProcess, serde_for, wait_until

pytestmark = pytest.mark.stack
PATIENT = {"DRIPPULSE_MODEL_CHECKPOINT_S": "3600", "DRIPPULSE_BATCH_SIZE": "20"}
"""Checkpoints only every DRIPPULSE_MODEL_CHECKPOINT_UPDATES outcomes, or when partitions go away."""


@pytest.fixture
def trainer(stack: EmbeddedStack, settings: Settings) -> Iterator[WorkerProcess]:
    process = WorkerProcess(settings, "trainer")
    yield process
    process.stop()


def history(org_id: str, leads: int, seed: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(lead.created, its outcome) per lead, the outcome ten minutes later."""
    rng = random.Random(seed)
    pairs = []
    for n in range(leads):
        created = lead_event(rng, org_id, n, occurred_at_ms=1_700_000_000_000 + n)
        converted = rng.random() < conversion_probability(created["lead"])
        pairs.append((created, outcome_event(created, converted, created["occurred_at_ms"] + 600_000)))
    return pairs


def revealed(outcome: dict[str, Any]) -> dict[str, Any]:
    """The lead.updated a CRM sends once the outcome is known."""
    title = "Customer" if outcome["event_type"] == "LEAD_CONVERTED" else "Lost"
    lead = {**outcome["lead"], "title": title}
    return {**outcome, "event_id": f"{outcome['event_id']}-update", "event_type": "LEAD_UPDATED", "lead": lead}


def produce(settings: Settings, records: list[dict[str, Any]]) -> tuple[int, int]:
    """(partition, offset after the last record): one org's records share a partition."""
    serde = serde_for(topics.INBOUND_EVENTS, settings)
    producer: Producer = make_producer(settings.kafka)
    delivered: list[tuple[int, int]] = []
    for record in records:
        producer.produce(
            inbound_topic(settings),
            serde.encode(record),
            record["org_id"].encode(),
            on_delivery=lambda _, message: delivered.append((message.partition(), message.offset())),
        )
    assert producer.flush(30) == 0
    partition, last = max(delivered, key=lambda d: d[1])
    return partition, last + 1


def inbound_topic(settings: Settings) -> str:
    return topics.topic_name(topics.INBOUND_EVENTS, settings.topic_prefix)


def consumed(settings: Settings, partition: int) -> int:
    """How far the trainer's consumer group has read (and committed in Kafka) in the partition."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": TRAINER_GROUP})
    try:
        (committed,) = consumer.committed([TopicPartition(inbound_topic(settings), partition)], timeout=10)
        return max(committed.offset, 0)
    finally:
        consumer.close()


def checkpointed(settings: Settings, partition: int) -> int:
    """How far the trainer's last checkpoint covers the partition."""
    store = ModelStore(connect(settings.database_url), TRAINER_GROUP, kept_versions=100)
    return store.committed([(inbound_topic(settings), partition)]).get((inbound_topic(settings), partition), 0)


def uninterrupted(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> LearnedModel:
    """What one pass in order learns: each outcome with its lead as lead.created described it."""
    model = LearnedModel()
    for created, outcome in pairs:
        model.learn(describing(created["lead"]), outcome["event_type"] == "LEAD_CONVERTED")
    return model


def latest(settings: Settings, org_id: str) -> tuple[int, LearnedModel]:
    store = ModelStore(connect(settings.database_url), TRAINER_GROUP, kept_versions=100)
    return store.latest([org_id])[org_id]


def test_a_trainer_killed_with_outcomes_learned_since_its_checkpoint_learns_each_exactly_once(
    settings: Settings, trainer: WorkerProcess
) -> None:
    """Killed after it read everything but checkpointed only part: the restarted trainer replays the
    rest from the checkpoint, with the snapshots in Redis already ahead of it: each lead was updated
    after its outcome with what the outcome revealed, which no example may see."""
    org_id = create_org(settings, "trainer-killed").org_id
    pairs = history(org_id, 400, seed=5)
    trainer.env = {**PATIENT, "DRIPPULSE_MODEL_CHECKPOINT_UPDATES": "150"}
    trainer.start()
    afterwards = [record for _, outcome in pairs for record in (outcome, revealed(outcome))]
    partition, end = produce(settings, [created for created, _ in pairs] + afterwards)
    wait_until(lambda: consumed(settings, partition) >= end, 60, "the trainer to read every outcome")
    assert 0 < latest(settings, org_id)[1].trained_on < 400, "some outcomes checkpointed, some not"
    trainer.kill()

    trainer.env = {"DRIPPULSE_MODEL_CHECKPOINT_S": "0.2"}
    trainer.start()
    wait_until(lambda: checkpointed(settings, partition) >= end, 60, "a checkpoint covering every outcome")
    assert latest(settings, org_id)[1] == uninterrupted(pairs)


def test_a_model_survives_a_restart_of_its_worker_unchanged(settings: Settings, trainer: WorkerProcess) -> None:
    """Nothing is checkpointed while it runs; stopping it checkpoints, and the restarted trainer goes
    on from that very model, learning nothing again."""
    org_id = create_org(settings, "trainer-restart").org_id
    pairs = history(org_id, 201, seed=11)
    trainer.env = {**PATIENT, "DRIPPULSE_MODEL_CHECKPOINT_UPDATES": "100000"}
    trainer.start()
    partition, end = produce(settings, [record for pair in pairs[:200] for record in pair])
    wait_until(lambda: consumed(settings, partition) >= end, 60, "the trainer to read 200 outcomes")
    assert latest(settings, org_id)[0] == 0, "no checkpoint yet"
    trainer.stop()
    version, stopped = latest(settings, org_id)
    assert (version, stopped) == (1, uninterrupted(pairs[:200])), "stopping checkpointed what it learned"

    trainer.start()
    partition, end = produce(settings, list(pairs[200]))
    wait_until(lambda: consumed(settings, partition) >= end, 60, "the trainer to read the 201st outcome")
    trainer.stop()
    assert latest(settings, org_id) == (2, uninterrupted(pairs)), "it resumed the very model, replaying nothing"
