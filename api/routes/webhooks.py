"""Webhook subscriptions (where an organization's notifications go) and their delivery history.

Deliveries are made by `drippulse worker webhooks`; this router manages what it reads, shows what it
did (every attempt, from ClickHouse) and hands it work: a test message, or a replay of a delivery.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from api.deliveries_reader import DeliveriesReader
from api.deps import Admin, Reader, Writer, get_deliveries, get_delivery_schedule, get_settings, get_webhooks
from api.destinations import refuse_unsafe
from api.problems import not_found
from drippulse.settings import Settings
from streams.clock import now_ms
from streams.webhook_schedule import DeliverySchedule, DeliveryTask
from streams.webhook_subscriptions import WebhookSubscriptions, public_view

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
Subscriptions = Annotated[WebhookSubscriptions, Depends(get_webhooks)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Schedule = Annotated[DeliverySchedule, Depends(get_delivery_schedule)]
History = Annotated[DeliveriesReader, Depends(get_deliveries)]
TEST_EVENT_TYPE = "webhook.test"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookCreate(_Body):
    url: str = Field(min_length=1, max_length=2000)
    event_types: list[str] = Field(default_factory=list, description="Empty: every event type.")
    description: str = Field(default="", max_length=500)
    enabled: bool = True


class WebhookUpdate(_Body):
    url: str | None = Field(default=None, min_length=1, max_length=2000)
    event_types: list[str] | None = None
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = None


class RotateSecret(_Body):
    overlap_hours: int = Field(
        default=24, ge=0, le=168, description="How long the previous secret keeps signing deliveries too."
    )


async def _subscription(webhooks: Subscriptions, org_id: str, webhook_id: str) -> dict[str, Any]:
    record = await webhooks.get(org_id, webhook_id)
    if record is None:
        raise not_found("webhook", webhook_id)
    return record


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_webhook(
    body: WebhookCreate, principal: Admin, webhooks: Subscriptions, settings: SettingsDep
) -> dict[str, Any]:
    """The signing secret is in this response only; it is stored encrypted and never shown again."""
    await refuse_unsafe(body.url, settings, "url")
    record, secret = await webhooks.create(principal.org_id, body.model_dump())
    return {**public_view(record), "secret": secret}


@router.get("")
async def list_webhooks(principal: Reader, webhooks: Subscriptions) -> dict[str, Any]:
    return {"items": [public_view(r) for r in await webhooks.list(principal.org_id)]}


@router.get("/{webhook_id}")
async def get_webhook(webhook_id: str, principal: Reader, webhooks: Subscriptions) -> dict[str, Any]:
    return public_view(await _subscription(webhooks, principal.org_id, webhook_id))


@router.patch("/{webhook_id}")
async def update_webhook(
    webhook_id: str, body: WebhookUpdate, principal: Admin, webhooks: Subscriptions, settings: SettingsDep
) -> dict[str, Any]:
    record = await _subscription(webhooks, principal.org_id, webhook_id)
    if body.url is not None:
        await refuse_unsafe(body.url, settings, "url")
    changes = body.model_dump(exclude_none=True)
    return public_view(await webhooks.update(principal.org_id, record, changes))


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(webhook_id: str, principal: Admin, webhooks: Subscriptions) -> Response:
    if not await webhooks.delete(principal.org_id, webhook_id):
        raise not_found("webhook", webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{webhook_id}/rotate_secret")
async def rotate_secret(
    webhook_id: str, principal: Admin, webhooks: Subscriptions, body: RotateSecret | None = None
) -> dict[str, Any]:
    """A new secret, shown once. The previous one stays valid for `overlap_hours` (both sign meanwhile)."""
    record = await _subscription(webhooks, principal.org_id, webhook_id)
    overlap_s = (body.overlap_hours if body else 24) * 3600
    rotated, secret = await webhooks.rotate_secret(principal.org_id, record, overlap_s)
    return {**public_view(rotated), "secret": secret}


@router.post("/{webhook_id}/test", status_code=status.HTTP_202_ACCEPTED)
async def send_test_message(
    webhook_id: str, principal: Writer, webhooks: Subscriptions, schedule: Schedule
) -> dict[str, Any]:
    """Queues a `webhook.test` message to this endpoint (whatever its event-type filter), signed and
    retried like any other; follow it at `GET .../deliveries/{delivery_id}`."""
    await _subscription(webhooks, principal.org_id, webhook_id)
    message_id = f"msg_test_{uuid.uuid4().hex}"
    payload = {
        "type": TEST_EVENT_TYPE,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": {"webhook_id": webhook_id, "message": "A test message from DripPulse."},
    }
    task = DeliveryTask.new(
        principal.org_id, webhook_id, message_id, TEST_EVENT_TYPE, orjson.dumps(payload).decode(), now_ms()
    )
    await schedule.enqueue(task)
    return task.public_view()


@router.get("/{webhook_id}/deliveries")
async def list_deliveries(
    webhook_id: str,
    principal: Reader,
    webhooks: Subscriptions,
    history: History,
    status_filter: Annotated[Literal["delivered", "failed", "pending"] | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Attempted deliveries, latest attempt first; `pending` means a retry is scheduled."""
    await _subscription(webhooks, principal.org_id, webhook_id)
    items, next_cursor = await run_in_threadpool(
        history.deliveries, principal.org_id, webhook_id, status_filter, limit, cursor
    )
    return {"items": items, "next_cursor": next_cursor}


async def _delivery(schedule: DeliverySchedule, org_id: str, webhook_id: str, delivery_id: str) -> DeliveryTask:
    task = await schedule.get(org_id, delivery_id)
    if task is None or task.webhook_id != webhook_id:
        raise not_found("delivery", delivery_id)
    return task


@router.get("/{webhook_id}/deliveries/{delivery_id}")
async def get_delivery(
    webhook_id: str, delivery_id: str, principal: Reader, schedule: Schedule, history: History
) -> dict[str, Any]:
    """The delivery's current state and every attempt so far. Kept for DRIPPULSE_WEBHOOK_RETENTION_S."""
    task = await _delivery(schedule, principal.org_id, webhook_id, delivery_id)
    attempts = await run_in_threadpool(history.attempts, principal.org_id, webhook_id, delivery_id)
    return {**task.public_view(), "attempt_history": attempts}


@router.post("/{webhook_id}/deliveries/{delivery_id}/replay", status_code=status.HTTP_202_ACCEPTED)
async def replay_delivery(
    webhook_id: str, delivery_id: str, principal: Writer, schedule: Schedule
) -> dict[str, Any]:
    """Sends the same message again (same `webhook-id`), with a fresh run of the retry schedule."""
    task = await _delivery(schedule, principal.org_id, webhook_id, delivery_id)
    return (await schedule.restart(task)).public_view()
