"""Test access to the control plane beside the API: what a test sets up that the API refuses (a
subscription or connection aimed at a loopback test server) or reads that no route shows."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import update

from api.control_plane import integrations, people, webhooks
from api.control_plane.actors import Scope, system
from api.control_plane.database import Database
from api.control_plane.tables import ApiKey
from drippulse.settings import Settings, secret_box

T = TypeVar("T")
TEST = system("test")


def run(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def go() -> T:
        database = Database(settings.database_url, pool_size=1)
        try:
            return await work(database)
        finally:
            await database.close()

    return asyncio.run(go())


def subscribe(settings: Settings, org_id: str, url: str, event_types: list[str] | None = None) -> tuple[str, str]:
    """(webhook id, signing secret) of a subscription stored as is, SSRF guard bypassed."""

    async def create(database: Database) -> tuple[str, str]:
        async with database.transaction() as session:
            fields = {"url": url, "event_types": event_types or [], "enabled": True}
            record, secret = await webhooks.create(session, Scope(org_id), TEST, secret_box(settings), fields)
        return record.id, secret

    return run(settings, create)


def repoint_webhook(settings: Settings, org_id: str, webhook_id: str, url: str) -> None:
    async def update(database: Database) -> None:
        async with database.transaction() as session:
            await webhooks.update(session, Scope(org_id), TEST, webhook_id, {"url": url})

    run(settings, update)


def repoint_connection(settings: Settings, org_id: str, connection_id: str, url: str) -> None:
    async def update(database: Database) -> None:
        async with database.transaction() as session:
            await integrations.update(
                session, Scope(org_id), TEST, secret_box(settings), connection_id, {"base_url": url}, None
            )

    run(settings, update)


def subscription(settings: Settings, org_id: str, webhook_id: str) -> dict[str, Any]:
    async def get(database: Database) -> dict[str, Any]:
        async with database.transaction() as session:
            found = await webhooks.get(session, org_id, webhook_id)
        return {"enabled": found.enabled, "disabled_reason": found.disabled_reason, "url": found.url}

    return run(settings, get)


def add_member(settings: Settings, org_id: str, email: str, roles: list[str], password: str | None) -> str:
    """A person joined to the org at once (as `drippulse users create` does); their user id."""

    async def add(database: Database) -> str:
        async with database.transaction() as session:
            user, _ = await people.add_member(session, org_id, TEST, email, "", roles, password)
        return user.id

    return run(settings, add)


def expire_key(settings: Settings, key_id: str) -> None:
    """Moves a key's expiry into the past (the API refuses to issue an already expired key)."""

    async def expire(database: Database) -> None:
        async with database.transaction() as session:
            await session.execute(
                update(ApiKey).where(ApiKey.id == key_id).values(expires_at=datetime.now(UTC) - timedelta(hours=1))
            )

    run(settings, expire)
