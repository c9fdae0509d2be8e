"""WebhookIntake: drip.webhooks.deliveries -> one scheduled delivery per subscribed endpoint.

Runs in the batch loop (its own thread of the webhook worker): decode a batch, take the subscriptions
of the batch's orgs from the revision-checked cache, write every new delivery to the schedule with one
pipeline, and only then let the loop commit. Sending happens elsewhere (WebhookDispatcher), so a slow endpoint never
holds a partition back. A message with no subscribed endpoint is done once it is read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis

from processors.delivery_policy import subscribed
from streams.clock import now_ms
from streams.delivery.webhook_schedule import DeliveryTask, queue_enqueue
from streams.runtime.dlq import DeadLetters
from streams.runtime.records import ConsumedRecord, OutputRecord
from streams.runtime.serde import AvroSerde
from streams.state.control_plane import RevisionCache

Subscriptions = RevisionCache[dict[str, dict[str, Any]]]

log = logging.getLogger(__name__)


class WebhookIntake:
    def __init__(
        self,
        serde: AvroSerde,
        client: redis.Redis,
        subscriptions: Subscriptions,
        dead_letters: DeadLetters,
        first_delay_ms: int,
    ) -> None:
        self._serde = serde
        self._redis = client
        self._subscriptions = subscriptions
        self._dead_letters = dead_letters
        self._first_delay_ms = first_delay_ms

    def on_rebalance(self) -> None:
        """Nothing per partition: subscriptions are cached per org, checked by revision."""

    def process(self, batch: Sequence[ConsumedRecord]) -> list[OutputRecord]:
        records, dead = self._dead_letters.decode_batch(self._serde, batch)
        if records:
            self._schedule(records)
        return dead

    def _schedule(self, records: list[dict[str, Any]]) -> None:
        subscriptions = self._subscriptions.get({r["org_id"] for r in records})
        due = now_ms() + self._first_delay_ms
        tasks = []
        for record in records:
            for webhook_id, subscription in subscriptions[record["org_id"]].items():
                if subscription.get("enabled", True) and subscribed(subscription["event_types"], record["event_type"]):
                    tasks.append(
                        DeliveryTask.new(
                            record["org_id"],
                            webhook_id,
                            record["message_id"],
                            record["event_type"],
                            record["payload_json"],
                            due,
                        )
                    )
        if tasks:
            pipe = self._redis.pipeline(transaction=False)
            queue_enqueue(pipe, tasks)
            pipe.execute()
