"""The batch runtime's producer reports failures only; a failed output must still stop the commit."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from drippulse.devstack import free_port
from drippulse.settings import Settings
from streams.runtime.batch_runtime import BatchWorker
from streams.runtime.kafka import DeliveryFailed, make_batch_producer, make_consumer
from streams.runtime.records import ConsumedRecord, OutputRecord


class _NoOutputs:
    def process(self, batch: Sequence[ConsumedRecord]) -> list[OutputRecord]:
        return []

    def on_rebalance(self) -> None:
        pass


def test_an_output_the_broker_never_acknowledges_fails_the_batch() -> None:
    settings = Settings(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")  # nothing listens there
    worker = BatchWorker(
        consumer=make_consumer(settings.kafka, "unreachable", log_level=0),
        producer=make_batch_producer(settings.kafka, **{"message.timeout.ms": 300, "log_level": 0}),
        processor=_NoOutputs(),
        topics=["drip.unreachable"],
        batch_size=1,
        batch_timeout_s=0.1,
        name="unreachable",
    )
    try:
        with pytest.raises(DeliveryFailed, match="timed out"):
            worker._produce_and_wait([("drip.unreachable", b"org-1", b"value")])
    finally:
        worker.run(_stopped())


def _stopped() -> threading.Event:
    """A stop already set: `run` only closes the worker's clients."""
    stop = threading.Event()
    stop.set()
    return stop
