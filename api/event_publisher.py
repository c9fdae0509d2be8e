"""Produces inbound events from the API and answers only once the broker has acknowledged them.

confluent-kafka is thread-based; a background thread serves delivery callbacks and resolves the
asyncio futures the request handlers await, so a request never blocks the event loop.

The wait is bounded: a broker that is unreachable (down, partitioned, frozen) acknowledges nothing,
and the producer would hold the records for `message.timeout.ms` (5 minutes) while the client hangs.
After `ack_timeout_s` the request fails instead (503 with Retry-After). The records stay queued in
the producer and are delivered once the broker is back, so a failed request's events may still
arrive: a client sends them again with the same event ids, and every id downstream is derived from
the event id, so the copies collapse (one execution, one CRM command id, one webhook-id). The
producer's own message timeout is left alone: on Tansu an idempotent producer whose messages time
out is fenced (PRODUCER_FENCED) for every later record, which a restart of the API alone cures.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streams.runtime.dlq import DeadLetters
from streams.runtime.records import OutputRecord
from streams.runtime.serde import AvroSerde

MAX_EVENT_BYTES = 256 * 1024
"""An encoded event's limit: well under the producer's and the broker's message size (1 MB by
default), so a batch's events are refused before any is produced, never one by the broker midway."""


class PublishFailed(RuntimeError):
    """The broker refused the records or did not acknowledge them in time; some may still arrive."""


class EventTooLarge(ValueError):
    def __init__(self, index: int, size: int) -> None:
        super().__init__(f"event {index} is {size} bytes encoded; at most {MAX_EVENT_BYTES}")
        self.index = index
        self.size = size


class EventPublisher:
    def __init__(
        self, producer: Producer, topic: str, serde: AvroSerde, ack_timeout_s: float, dead_letters: DeadLetters
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._serde = serde
        self._dead_letters = dead_letters
        self._ack_timeout_s = ack_timeout_s
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="event-publisher-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def encode(self, records: list[dict[str, Any]]) -> list[bytes]:
        """Each record's value; EventTooLarge names the first over MAX_EVENT_BYTES."""
        values = [self._serde.encode(record) for record in records]
        for index, value in enumerate(values):
            if len(value) > MAX_EVENT_BYTES:
                raise EventTooLarge(index, len(value))
        return values

    async def publish(self, records: list[dict[str, Any]]) -> None:
        """`publish_encoded` of the records, checked by `encode` first."""
        await self.publish_encoded([r["org_id"] for r in records], self.encode(records))

    async def publish_encoded(self, org_ids: list[str], values: list[bytes]) -> None:
        """Returns once the broker acknowledged every value (keyed by its org); raises PublishFailed
        if the producer or the broker refused one, or did not acknowledge them all within
        `ack_timeout_s`."""
        await self._produce(
            [(self._topic, org_id.encode(), value) for org_id, value in zip(org_ids, values, strict=True)]
        )

    async def dead_letter(self, org_id: str, value: bytes, error_kind: str, error: str) -> None:
        """Keeps an encoded event the API accepted but will not publish (a call its agent refuses) on
        drip.events.dlq with the reason, acknowledged like a publish: replaying the letter publishes
        the event."""
        await self._produce([self._dead_letters.refused(self._topic, org_id.encode(), value, error_kind, error)])

    async def _produce(self, records: list[OutputRecord]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ack_timeout_s
        futures = []
        for topic, key, value in records:
            future: asyncio.Future[None] = loop.create_future()

            def on_delivery(err: KafkaError | None, _: Message, future: asyncio.Future[None] = future) -> None:
                if err is None:
                    loop.call_soon_threadsafe(_resolve, future, None)
                else:
                    loop.call_soon_threadsafe(_resolve, future, PublishFailed(str(err)))

            while True:
                try:
                    self._producer.produce(topic, value, key, on_delivery=on_delivery)
                    break
                except BufferError:
                    if loop.time() > deadline:
                        raise PublishFailed("the producer's queue stayed full: the broker takes nothing") from None
                    await asyncio.sleep(0.01)
                except KafkaException as exc:
                    raise PublishFailed(f"the producer refused a record: {exc.args[0].str()}") from None
            futures.append(future)
        try:
            await asyncio.wait_for(asyncio.gather(*futures), max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise PublishFailed(f"the broker did not acknowledge within {self._ack_timeout_s:g} s") from None

    def healthy(self) -> bool:
        try:
            self._producer.list_topics(self._topic, timeout=2)
        except Exception:
            return False
        return True

    def close(self) -> None:
        self._stop.set()
        self._poller.join(timeout=2)
        self._producer.flush(10)


def _resolve(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
