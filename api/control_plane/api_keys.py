"""API keys: issued and revoked by Admins in their sessions, for programs and external agents.

A key has one role, optionally one project (it then sees only that project's resources), an
optional expiry, and remembers who issued it and the person it acts for: keys acting for a person
stop working when that person is deactivated in the organization.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from api.control_plane import audit
from api.control_plane.actors import Actor, Scope
from api.control_plane.ids import new_id
from api.control_plane.organizations import get_project
from api.control_plane.rows import newest_first, one, scoped
from api.control_plane.tables import ApiKey
from api.problems import Problem
from api.security import API_KEY_PREFIX, new_token


async def issue(
    session: AsyncSession,
    scope: Scope,
    actor: Actor,
    name: str,
    role: str,
    project_id: str | None = None,
    expires_at: datetime | None = None,
    agent: bool = False,
    acts_for: str | None = None,
) -> tuple[ApiKey, str]:
    """The key record and its secret, which is returned this once and stored only as a hash. The
    key acts for the person who issues it, or for `acts_for` when the operator's CLI issues it for
    an organization's first admin."""
    if project_id is not None:
        await get_project(session, scope, project_id)
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise Problem(
            422,
            "validation",
            "Validation failed",
            "expires_at is in the past",
            errors=[{"field": "$.expires_at", "message": "must be in the future"}],
        )
    token = new_token(API_KEY_PREFIX)
    key = ApiKey(
        id=new_id("key"),
        org_id=scope.org_id,
        project_id=project_id,
        name=name,
        role=role,
        agent=agent,
        key_hash=token.hash,
        prefix=token.display_prefix,
        issued_by=actor.label,
        issued_by_user_id=acts_for or actor.user_id,
        expires_at=expires_at,
    )
    session.add(key)
    await session.flush()
    await session.refresh(key)
    audit.record(
        session,
        scope.org_id,
        actor,
        "api_key.create",
        ("api_key", key.id),
        after=audit.snapshot(key),
        project_id=project_id,
    )
    return key, token.secret


async def list_keys(
    session: AsyncSession, org_id: str, limit: int, after: tuple[datetime, str] | None = None
) -> list[ApiKey]:
    """Newest first; `after` is the (created_at, id) of the previous page's last row."""
    return await newest_first(session, scoped(ApiKey, Scope(org_id)), ApiKey.created_at, ApiKey.id, limit, after)


async def get_key(session: AsyncSession, org_id: str, key_id: str, lock: bool = False) -> ApiKey:
    return await one(session, ApiKey, "api key", org_id, key_id, lock=lock)


async def revoke(session: AsyncSession, scope: Scope, actor: Actor, key_id: str) -> ApiKey:
    key = await get_key(session, scope.org_id, key_id, lock=True)
    if key.revoked_at is None:
        before = audit.snapshot(key)
        key.revoked_at = datetime.now(UTC)
        audit.record(
            session,
            scope.org_id,
            actor,
            "api_key.revoke",
            ("api_key", key_id),
            before,
            audit.snapshot(key),
            project_id=key.project_id,
        )
    return key
