"""Integration connections: the CRMs an organization's commands are applied to, and how.

Credentials (an API token) are sealed at rest, never returned by the API and never logged; only the
CRM worker opens them, to build its request headers. Every change bumps the organization's revision,
which is how the CRM workers notice it.

A credential is bound to where it is sent: changing `base_url` of a connection that has credentials
needs them in the same request (a token again, or "" to drop them). Otherwise anyone who may edit the
connection could point it at a server of theirs and receive the stored token. Such a change is
audited as `integration.move`.
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
from api.control_plane.tables import IntegrationConnection
from api.problems import invalid
from streams.state.secret_box import SecretBox


async def create(
    session: AsyncSession, scope: Scope, actor: Actor, box: SecretBox, fields: dict[str, Any], credentials: str | None
) -> IntegrationConnection:
    connection = IntegrationConnection(
        id=new_id("conn"),
        org_id=scope.org_id,
        sealed_credentials=box.seal(credentials) if credentials else None,
        **fields,
    )
    session.add(connection)
    await bump_revision(session, scope.org_id)
    await session.flush()
    await session.refresh(connection)
    audit.record(
        session,
        scope.org_id,
        actor,
        "integration.create",
        ("integration_connection", connection.id),
        after=audit.snapshot(connection),
    )
    return connection


async def list_all(session: AsyncSession, org_id: str) -> list[IntegrationConnection]:
    return await all_of(session, IntegrationConnection, org_id)


async def get(session: AsyncSession, org_id: str, connection_id: str, lock: bool = False) -> IntegrationConnection:
    return await one(session, IntegrationConnection, "integration connection", org_id, connection_id, lock=lock)


async def update(
    session: AsyncSession,
    scope: Scope,
    actor: Actor,
    box: SecretBox,
    connection_id: str,
    changes: dict[str, Any],
    credentials: str | None,
) -> IntegrationConnection:
    """`credentials`: None keeps them, an empty string removes them."""
    connection = await get(session, scope.org_id, connection_id, lock=True)
    moved = changes.get("base_url", connection.base_url) != connection.base_url
    if moved and connection.sealed_credentials is not None and credentials is None:
        message = 'a new base_url needs the credentials again (or "" to remove them): they go where it points'
        raise invalid([{"field": "credentials", "message": message}], message)
    before = audit.snapshot(connection)
    for field, value in changes.items():
        setattr(connection, field, value)
    if credentials is not None:
        connection.sealed_credentials = box.seal(credentials) if credentials else None
    connection.updated_at = datetime.now(UTC)
    await bump_revision(session, scope.org_id)
    await session.flush()
    audit.record(
        session,
        scope.org_id,
        actor,
        "integration.move" if moved else "integration.update",
        ("integration_connection", connection_id),
        before,
        audit.snapshot(connection),
    )
    return connection


async def delete(session: AsyncSession, scope: Scope, actor: Actor, connection_id: str) -> None:
    connection = await get(session, scope.org_id, connection_id, lock=True)
    before = audit.snapshot(connection)
    await session.delete(connection)
    await bump_revision(session, scope.org_id)
    audit.record(
        session, scope.org_id, actor, "integration.delete", ("integration_connection", connection_id), before=before
    )
