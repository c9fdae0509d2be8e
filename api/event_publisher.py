"""Produces inbound events from the API and answers only once the broker has acknowledged them.

confluent-kafka is thread-based; a background thread serves delivery callbacks and resolves the
asyncio futures the request handlers await, so a request never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from streams.runtime.serde import AvroSerde


class PublishFailed(RuntimeError):
    pass


class EventPublisher:
    def __init__(self, producer: Producer, topic: str, serde: AvroSerde) -> None:
        self._producer = producer
        self._topic = topic
        self._serde = serde
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="event-publisher-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def publish(self, records: list[dict[str, Any]]) -> None:
        loop = asyncio.get_running_loop()
        futures = []
        for record in records:
            future: asyncio.Future[None] = loop.create_future()

            def on_delivery(err: KafkaError | None, _: Message, future: asyncio.Future[None] = future) -> None:
                if err is None:
                    loop.call_soon_threadsafe(_resolve, future, None)
                else:
                    loop.call_soon_threadsafe(_resolve, future, PublishFailed(str(err)))

            value = self._serde.encode(record)
            while True:
                try:
                    self._producer.produce(self._topic, value, record["org_id"].encode(), on_delivery=on_delivery)
                    break
                except BufferError:
                    await asyncio.sleep(0.01)
            futures.append(future)
        await asyncio.gather(*futures)

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
