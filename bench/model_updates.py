"""model_updates_per_s: the real model trainer (`build_trainer`, the worker `drippulse worker trainer`
runs) learning from outcomes through Kafka, Redis and PostgreSQL.

100 orgs; LEADS synthetic lead.created events, then an outcome for each (drippulse/synthetic.py), are
on the inbound topic before the trainer starts. It learns with the default checkpoint settings, so
the figure includes the lead snapshots in Redis and a PostgreSQL checkpoint every 1,000 outcomes.
The rate counts outcomes learned per second from the first batch that learned one to the last, in
one process. Alone: `python -m bench.model_updates` (its own embedded stack).
"""

from __future__ import annotations

import os
import random
import time
import uuid
from typing import Any

from bench.alone import alone

LEADS = int(os.environ.get("BENCH_MODEL_LEADS", "50000"))
ORGS = 100


def _produce(settings: Any, org_ids: list[str]) -> None:
    from drippulse.synthetic import conversion_probability, lead_event, outcome_event
    from streams import topics
    from streams.runtime.kafka import ensure_topics, make_producer, produce_waiting
    from streams.runtime.schema_registry import make_registry
    from streams.runtime.serde import AvroSerde

    ensure_topics(settings.kafka)
    topic = topics.topic_name(topics.INBOUND_EVENTS, settings.topic_prefix)
    serde = AvroSerde(topics.INBOUND_EVENTS, topic, make_registry(settings.schema_registry_url))
    producer = make_producer(settings.kafka)
    rng = random.Random(9)
    leads = [lead_event(rng, org_ids[n % len(org_ids)], n) for n in range(LEADS)]
    outcomes = [
        outcome_event(lead, rng.random() < conversion_probability(lead["lead"]), lead["occurred_at_ms"] + 1)
        for lead in leads
    ]
    for record in leads + outcomes:
        produce_waiting(producer, topic, serde.encode(record), record["org_id"].encode())
    assert producer.flush(120) == 0


def measure(settings: Any) -> dict[str, Any]:
    from drippulse.synthetic import create_orgs
    from drippulse.workers import build_trainer, tune_gc_for_batches

    org_ids = create_orgs(settings.database_url, [], ORGS, f"bench-model-{uuid.uuid4().hex[:6]}")
    _produce(settings, org_ids)
    worker = build_trainer(settings)
    trainer: Any = worker.processor
    tune_gc_for_batches()
    learning: list[tuple[float, int]] = []
    deadline = time.monotonic() + 600
    while trainer.updates < LEADS and time.monotonic() < deadline:
        before = trainer.updates
        worker.run_once()
        if trainer.updates > before:
            learning.append((time.monotonic(), trainer.updates - before))
    if trainer.updates < LEADS:
        raise RuntimeError(f"the trainer learned {trainer.updates} of {LEADS} outcomes")
    learned_after_first = sum(count for _, count in learning[1:])
    return {"model_updates_per_s": round(learned_after_first / (learning[-1][0] - learning[0][0]))}


def main() -> None:
    print(alone("model", measure))


if __name__ == "__main__":
    main()
