"""Webhook subscriptions: where an organization's notifications go.

The signing secret is shown once (on create or rotation) and stored only sealed. Rotation keeps the
old secret valid for an overlap period, during which deliveries are signed with both, so receivers
can switch without dropping a message. Every change bumps the organization's revision: the webhook
workers read subscriptions from here, cached per revision.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from api.control_plane import audit
from api.control_plane.actors import Actor, Scope
from api.control_plane.ids import new_id
from api.control_plane.organizations import bump_revision
from api.control_plane.rows import all_of, one
from api.control_plane.tables import WebhookSubscription
from streams.delivery.signing_secrets import new_secrets, rotated, valid
from streams.state.secret_box import SecretBox


async def create(
    session: AsyncSession, scope: Scope, actor: Actor, box: SecretBox, fields: dict[str, Any]
) -> tuple[WebhookSubscription, str]:
    stored, secret = new_secrets(box)
    subscription = WebhookSubscription(id=new_id("wh"), org_id=scope.org_id, secrets=stored, **fields)
    session.add(subscription)
    await bump_revision(session, scope.org_id)
    await session.flush()
    await session.refresh(subscription)
    audit.record(
        session, scope.org_id, actor, "webhook.create", ("webhook", subscription.id), after=audit.snapshot(subscription)
    )
    return subscription, secret


async def list_all(session: AsyncSession, org_id: str) -> list[WebhookSubscription]:
    return await all_of(session, WebhookSubscription, org_id)


async def get(session: AsyncSession, org_id: str, webhook_id: str, lock: bool = False) -> WebhookSubscription:
    return await one(session, WebhookSubscription, "webhook", org_id, webhook_id, lock=lock)


async def update(
    session: AsyncSession, scope: Scope, actor: Actor, webhook_id: str, changes: dict[str, Any]
) -> WebhookSubscription:
    """Re-enabling clears the reason it was disabled (the worker resets the failure streak)."""
    subscription = await get(session, scope.org_id, webhook_id, lock=True)
    before = audit.snapshot(subscription)
    for field, value in changes.items():
        setattr(subscription, field, value)
    if changes.get("enabled"):
        subscription.disabled_reason = None
    subscription.updated_at = datetime.now(UTC)
    await bump_revision(session, scope.org_id)
    await session.flush()
    audit.record(
        session, scope.org_id, actor, "webhook.update", ("webhook", webhook_id), before, audit.snapshot(subscription)
    )
    return subscription


async def delete(session: AsyncSession, scope: Scope, actor: Actor, webhook_id: str) -> None:
    subscription = await get(session, scope.org_id, webhook_id, lock=True)
    before = audit.snapshot(subscription)
    await session.delete(subscription)
    await bump_revision(session, scope.org_id)
    audit.record(session, scope.org_id, actor, "webhook.delete", ("webhook", webhook_id), before=before)


async def rotate_secret(
    session: AsyncSession, scope: Scope, actor: Actor, box: SecretBox, webhook_id: str, overlap_s: int
) -> tuple[WebhookSubscription, str]:
    subscription = await get(session, scope.org_id, webhook_id, lock=True)
    before = audit.snapshot(subscription)
    subscription.secrets, secret = rotated(valid(subscription.secrets), box, overlap_s)
    subscription.updated_at = datetime.now(UTC)
    await bump_revision(session, scope.org_id)
    await session.flush()
    audit.record(
        session,
        scope.org_id,
        actor,
        "webhook.rotate_secret",
        ("webhook", webhook_id),
        before,
        audit.snapshot(subscription),
    )
    return subscription, secret
