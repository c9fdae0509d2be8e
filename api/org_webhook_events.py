"""Webhook events about the organization itself (an agent paused, …) rather than about an execution:
the API queues them straight into the delivery schedule for each subscribed endpoint, as it does a
test message, and the webhook worker signs, sends and retries them like every other delivery.

They do not pass through `drip.webhooks.deliveries`: that topic's records belong to executions (its
intake is in the webhook worker, reading subscriptions from its cache), while the API reads the
subscriptions from PostgreSQL, where they are current.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from api.control_plane import webhooks
from api.control_plane.database import Database
from processors.delivery_policy import subscribed
from streams.clock import now_ms
from streams.delivery.webhook_schedule import DeliverySchedule, DeliveryTask, queue_enqueue


async def publish_org_webhook_event(
    database: Database,
    schedule: DeliverySchedule,
    org_id: str,
    event_type: str,
    data: dict[str, Any],
    message_id: str,
) -> list[str]:
    """Queues `{"type": event_type, "timestamp": …, "data": data}` to every enabled endpoint of the
    org subscribed to `event_type`; the delivery ids. `message_id` (the `webhook-id` receivers
    deduplicate on) must name the occurrence, e.g. `msg_agent.paused_<agent id>_<paused at ms>`:
    publishing the same id again queues nothing new."""
    async with database.transaction() as session:
        subscriptions = await webhooks.list_all(session, org_id)
    payload = orjson.dumps(
        {"type": event_type, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "data": data}
    ).decode()
    due = now_ms()
    tasks = [
        DeliveryTask.new(org_id, subscription.id, message_id, event_type, payload, due)
        for subscription in subscriptions
        if subscription.enabled and subscribed(list(subscription.event_types), event_type)
    ]
    if tasks:
        pipe = schedule.pipeline()
        queue_enqueue(pipe, tasks)
        await pipe.execute()
    return [task.delivery_id for task in tasks]
