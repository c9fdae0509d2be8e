"""Webhook subscriptions (where an organization's notifications go) and their delivery history.

Deliveries are made by `drippulse worker webhooks`; this router manages what it reads, shows what it
did (every attempt, from ClickHouse) and hands it work: a test message, or a replay of a delivery.
A URL is a secret too (a capability token in its path or query): those who may read subscriptions
but not manage them see `scheme://host[:port]/…` (`streams.delivery.redacted_url`), and so does
every reader of the attempts, which are history.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from api.control_plane import webhooks
from api.control_plane.tables import WebhookSubscription
from api.deliveries_reader import DeliveriesReader
from api.deps import (
    Box,
    Db,
    Schedule,
    SettingsDep,
    WebhooksManage,
    WebhooksRead,
    get_deliveries,
)
from api.destinations import refuse_unsafe
from api.models import Items, Page, required_ms
from api.permissions import Action, Principal, allows
from api.problems import not_found, responses
from streams.clock import now_ms
from streams.delivery.redacted_url import redacted_url
from streams.delivery.signing_secrets import rotation_view, valid
from streams.delivery.webhook_schedule import DeliverySchedule, DeliveryTask

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], responses=responses(401, 403, 422))
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


class WebhookOut(BaseModel):
    id: str
    url: str
    event_types: list[str] = Field(description="Empty: every event type.")
    description: str
    enabled: bool
    disabled_reason: str | None = Field(description="Why the worker disabled it (410 Gone, failing too long).")
    signing_secrets: int = Field(description="How many secrets sign each delivery now (2 during a rotation).")
    previous_secret_valid_until_ms: int | None
    created_at_ms: int
    updated_at_ms: int


class WebhookWithSecret(WebhookOut):
    secret: str = Field(description="The `whsec_…` signing secret. Shown once, stored encrypted.")


class DeliveryState(BaseModel):
    delivery_id: str
    org_id: str
    webhook_id: str
    message_id: str = Field(description="The `webhook-id` header: stable across retries and replays.")
    event_type: str
    created_at_ms: int
    next_attempt_at_ms: int | None
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str
    completed_at_ms: int | None


class DeliverySummary(BaseModel):
    delivery_id: str
    message_id: str
    event_type: str
    attempts: int
    status: Literal["delivered", "failed", "pending"]
    last_status_code: int | None
    last_error: str
    last_attempt_at_ms: int


class Attempt(BaseModel):
    attempt_id: str
    attempt: int
    url: str
    result: str = Field(description="succeeded | retrying | failed")
    status_code: int | None
    latency_ms: int
    error: str
    response_excerpt: str
    attempted_at_ms: int
    next_attempt_at_ms: int | None


class DeliveryDetail(DeliveryState):
    attempt_history: list[Attempt]


def webhook_out(subscription: WebhookSubscription, reader: Principal) -> WebhookOut:
    """The whole URL only for those who manage webhooks."""
    return WebhookOut(
        id=subscription.id,
        url=subscription.url if allows(reader, Action.WEBHOOKS_MANAGE) else redacted_url(subscription.url),
        event_types=list(subscription.event_types),
        description=subscription.description,
        enabled=subscription.enabled,
        disabled_reason=subscription.disabled_reason,
        **rotation_view(valid(subscription.secrets)),
        created_at_ms=required_ms(subscription.created_at),
        updated_at_ms=required_ms(subscription.updated_at),
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookWithSecret)
async def create_webhook(
    body: WebhookCreate, principal: WebhooksManage, database: Db, box: Box, settings: SettingsDep
) -> WebhookWithSecret:
    """The signing secret is in this response only; it is stored encrypted and never shown again.
    URLs resolving to loopback, private, link-local, CGNAT, multicast or metadata addresses get 422."""
    await refuse_unsafe(body.url, settings, "url")
    async with database.transaction() as session:
        subscription, secret = await webhooks.create(session, principal.scope, principal.actor, box, body.model_dump())
    return WebhookWithSecret(**webhook_out(subscription, principal).model_dump(), secret=secret)


@router.get("", response_model=Items[WebhookOut])
async def list_webhooks(principal: WebhooksRead, database: Db) -> Items[WebhookOut]:
    async with database.transaction() as session:
        return Items(items=[webhook_out(s, principal) for s in await webhooks.list_all(session, principal.org_id)])


@router.get("/{webhook_id}", response_model=WebhookOut, responses=responses(404))
async def get_webhook(webhook_id: str, principal: WebhooksRead, database: Db) -> WebhookOut:
    async with database.transaction() as session:
        return webhook_out(await webhooks.get(session, principal.org_id, webhook_id), principal)


@router.patch("/{webhook_id}", response_model=WebhookOut, responses=responses(404))
async def update_webhook(
    webhook_id: str, body: WebhookUpdate, principal: WebhooksManage, database: Db, settings: SettingsDep
) -> WebhookOut:
    """Re-enabling a disabled endpoint clears `disabled_reason` and its failure streak."""
    if body.url is not None:
        await refuse_unsafe(body.url, settings, "url")
    async with database.transaction() as session:
        changed = await webhooks.update(
            session, principal.scope, principal.actor, webhook_id, body.model_dump(exclude_none=True)
        )
    return webhook_out(changed, principal)


@router.delete(
    "/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, responses=responses(404)
)
async def delete_webhook(webhook_id: str, principal: WebhooksManage, database: Db) -> Response:
    async with database.transaction() as session:
        await webhooks.delete(session, principal.scope, principal.actor, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{webhook_id}/rotate_secret", response_model=WebhookWithSecret, responses=responses(404))
async def rotate_secret(
    webhook_id: str, principal: WebhooksManage, database: Db, box: Box, body: RotateSecret | None = None
) -> WebhookWithSecret:
    """A new secret, shown once. The previous one stays valid for `overlap_hours` (both sign meanwhile)."""
    overlap_s = (body.overlap_hours if body else 24) * 3600
    async with database.transaction() as session:
        rotated, secret = await webhooks.rotate_secret(
            session, principal.scope, principal.actor, box, webhook_id, overlap_s
        )
    return WebhookWithSecret(**webhook_out(rotated, principal).model_dump(), secret=secret)


async def _exists(database: Db, org_id: str, webhook_id: str) -> None:
    async with database.transaction() as session:
        await webhooks.get(session, org_id, webhook_id)


@router.post(
    "/{webhook_id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryState,
    responses=responses(404),
)
async def send_test_message(
    webhook_id: str, principal: WebhooksManage, database: Db, schedule: Schedule
) -> DeliveryState:
    """Queues a `webhook.test` message to this endpoint (whatever its event-type filter), signed and
    retried like any other; follow it at `GET .../deliveries/{delivery_id}`."""
    await _exists(database, principal.org_id, webhook_id)
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
    return DeliveryState(**task.public_view())


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliverySummary], responses=responses(400, 404))
async def list_deliveries(
    webhook_id: str,
    principal: WebhooksRead,
    database: Db,
    history: History,
    status_filter: Annotated[Literal["delivered", "failed", "pending"] | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Page[DeliverySummary]:
    """Attempted deliveries, latest attempt first; `pending` means a retry is scheduled."""
    await _exists(database, principal.org_id, webhook_id)
    items, next_cursor = await run_in_threadpool(
        history.deliveries, principal.org_id, webhook_id, status_filter, limit, cursor
    )
    return Page(items=[DeliverySummary(**item) for item in items], next_cursor=next_cursor)


async def _delivery(schedule: DeliverySchedule, org_id: str, webhook_id: str, delivery_id: str) -> DeliveryTask:
    task = await schedule.get(org_id, delivery_id)
    if task is None or task.webhook_id != webhook_id:
        raise not_found("delivery", delivery_id)
    return task


@router.get("/{webhook_id}/deliveries/{delivery_id}", response_model=DeliveryDetail, responses=responses(404))
async def get_delivery(
    webhook_id: str, delivery_id: str, principal: WebhooksRead, schedule: Schedule, history: History
) -> DeliveryDetail:
    """The delivery's current state and every attempt so far. Kept for DRIPPULSE_WEBHOOK_RETENTION_S."""
    task = await _delivery(schedule, principal.org_id, webhook_id, delivery_id)
    attempts = await run_in_threadpool(history.attempts, principal.org_id, webhook_id, delivery_id)
    return DeliveryDetail(**task.public_view(), attempt_history=[Attempt(**a) for a in attempts])


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryState,
    responses=responses(404),
)
async def replay_delivery(
    webhook_id: str, delivery_id: str, principal: WebhooksManage, schedule: Schedule
) -> DeliveryState:
    """Sends the same message again (same `webhook-id`), with a fresh run of the retry schedule."""
    task = await _delivery(schedule, principal.org_id, webhook_id, delivery_id)
    return DeliveryState(**(await schedule.restart(task)).public_view())
