"""Webhook subscriptions: where an organization's notifications go. Deliveries themselves are made by
the webhook delivery worker (not built yet); this is the management API it will read."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Admin, Reader, get_settings, get_webhooks
from api.problems import Problem, not_found
from api.webhook_store import WebhookSubscriptions, public_view
from drippulse.settings import Settings
from streams.ssrf_guard import UnsafeDestination, check_destination

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
Subscriptions = Annotated[WebhookSubscriptions, Depends(get_webhooks)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


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


async def _safe(url: str, settings: Settings) -> None:
    try:
        await run_in_threadpool(check_destination, url, settings.webhook_allow_loopback)
    except UnsafeDestination as exc:
        raise Problem(
            422, "unsafe-destination", "Destination refused", str(exc), errors=[{"field": "url", "message": str(exc)}]
        ) from None


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
    await _safe(body.url, settings)
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
        await _safe(body.url, settings)
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
