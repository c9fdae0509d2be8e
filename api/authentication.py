"""Turning a bearer token or the session cookie into a Principal, on every request.

Nothing is cached between requests, so a revoked key, an expired session or a deactivated member is
refused from the next request on. API keys (`dpk_…`) carry one role and maybe one project; sessions
(`dps_…`) take the member's current roles. A key acts for the person who issued it (its actor
carries their user id, which four-eyes compares) and stops when that person is deactivated in the
organization. `last_used_at` is written at most once a minute per key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import aliased

from api.control_plane.actors import Actor
from api.control_plane.database import Database
from api.control_plane.tables import ApiKey, Membership, Session, User
from api.permissions import Principal, Role
from api.problems import Problem
from api.security import API_KEY_PREFIX, SESSION_PREFIX, hash_token

_LAST_USED_GRANULARITY = timedelta(seconds=60)


def _refused(detail: str) -> Problem:
    return Problem(401, "unauthorized", "Not authenticated", detail)


async def authenticate(database: Database, token: str) -> Principal:
    """The principal of a bearer token: an API key or a session."""
    if token.startswith(API_KEY_PREFIX):
        return await _api_key(database, token)
    if token.startswith(SESSION_PREFIX):
        principal, _ = await authenticate_session(database, token)
        return principal
    raise _refused("the credential is neither an API key (dpk_…) nor a session token (dps_…)")


async def _api_key(database: Database, token: str) -> Principal:
    issuer, issuer_membership = aliased(User), aliased(Membership)
    now = datetime.now(UTC)
    async with database.transaction() as session:
        row = (
            await session.execute(
                select(ApiKey, issuer.active, issuer_membership.active)
                .outerjoin(issuer, issuer.id == ApiKey.issued_by_user_id)
                .outerjoin(
                    issuer_membership,
                    (issuer_membership.org_id == ApiKey.org_id)
                    & (issuer_membership.user_id == ApiKey.issued_by_user_id),
                )
                .where(ApiKey.key_hash == hash_token(token))
            )
        ).first()
        if row is None:
            raise _refused("unknown API key")
        key, issuer_active, issuer_member_active = row
        if key.revoked_at is not None:
            raise _refused("this API key was revoked")
        if key.expires_at is not None and key.expires_at <= now:
            raise _refused("this API key has expired")
        if key.issued_by_user_id is not None and not (issuer_active and issuer_member_active):
            raise _refused("the person who issued this API key was deactivated")
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == key.id)
            .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - _LAST_USED_GRANULARITY))
            .values(last_used_at=now)
        )
    return Principal(
        org_id=key.org_id,
        roles=frozenset({Role(key.role)}),
        actor=Actor("api_key", key.id, f"key {key.name} ({key.prefix}…)", key.issued_by_user_id),
        project_id=key.project_id,
        agent=key.agent,
    )


async def authenticate_session(database: Database, token: str) -> tuple[Principal, str]:
    """The principal of a session token, and the session's CSRF token (cookie requests echo it).
    The cookie carries sessions only: a key there would be sent by the browser on its own, and a key
    has no CSRF token to check."""
    if not token.startswith(SESSION_PREFIX):
        raise _refused("the session cookie carries a session token (dps_…) only")
    async with database.transaction() as session:
        row = (
            await session.execute(
                select(Session, User, Membership)
                .join(User, User.id == Session.user_id)
                .join(Membership, (Membership.org_id == Session.org_id) & (Membership.user_id == Session.user_id))
                .where(Session.token_hash == hash_token(token))
            )
        ).first()
    if row is None:
        raise _refused("unknown session")
    login, user, membership = row
    if login.revoked_at is not None:
        raise _refused("this session has ended (logged out, or the member was deactivated)")
    if login.expires_at <= datetime.now(UTC):
        raise _refused("this session has expired; log in again")
    if not (user.active and membership.active):
        raise _refused("this member is deactivated")
    principal = Principal(
        org_id=login.org_id,
        roles=frozenset(Role(r) for r in membership.roles),
        actor=Actor("user", user.id, user.email, user.id),
        session_id=login.id,
    )
    return principal, login.csrf_token
