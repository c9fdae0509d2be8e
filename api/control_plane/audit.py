"""The audit log: every control-plane write, with who, what, before and after, in the write's own
transaction (so there is never a change without its entry, nor an entry without its change).

Only the fields that changed are kept, and secrets never: a secret field that changed is recorded
as "[redacted]" on both sides, which says that it changed and nothing else (null stays null, so a
secret set or removed shows as such). A webhook URL may hold a capability token in its path or
query, so it is recorded as `scheme://host[:port]/…`; when only what that hides changed, both sides
would read alike, so the new one says "[redacted: changed]" after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.control_plane.actors import Actor
from api.control_plane.rows import newest_first
from api.control_plane.tables import AuditEntry
from api.request_context import request_id
from streams.delivery.redacted_url import redacted_url

SECRET_FIELDS = frozenset(
    {
        "secret",
        "secrets",
        "key_hash",
        "password",
        "password_hash",
        "token",
        "token_hash",
        "csrf_token",
        "credentials",
        "sealed_credentials",
        "summary_credential",
    }
)
REDACTED = "[redacted]"
CHANGED_UNSEEN = "[redacted: changed]"
URL_FIELDS = frozenset({"url"})
"""Webhook subscriptions' URLs (no other audited row has a `url`)."""


def _shown(key: str, value: Any) -> Any:
    if key in SECRET_FIELDS and value is not None:
        return REDACTED
    if key in URL_FIELDS and isinstance(value, str):
        return redacted_url(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def changed_fields(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(before, after) narrowed to the fields that differ; a creation or deletion keeps every field."""
    if before is None or after is None:
        whole = before if before is not None else after
        kept = {k: _shown(k, v) for k, v in (whole or {}).items()}
        return (kept, None) if before is not None else (None, kept)
    keys = [k for k in {**before, **after} if before.get(k) != after.get(k)]
    old = {k: _shown(k, before.get(k)) for k in keys}
    new = {k: _shown(k, after.get(k)) for k in keys}
    for key in keys:
        if old[key] == new[key] and old[key] != REDACTED:
            new[key] = f"{new[key]} {CHANGED_UNSEEN}"
    return old, new


def record(
    session: AsyncSession,
    org_id: str,
    actor: Actor,
    action: str,
    resource: tuple[str, str],
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    project_id: str | None = None,
) -> None:
    """Adds the entry to the session's transaction; it commits or rolls back with the change."""
    old, new = changed_fields(before, after)
    session.add(
        AuditEntry(
            org_id=org_id,
            actor_type=actor.type,
            actor_id=actor.id,
            actor_label=actor.label,
            action=action,
            resource_type=resource[0],
            resource_id=resource[1],
            project_id=project_id,
            before=old,
            after=new,
            request_id=request_id(),
        )
    )


def snapshot(row: Any) -> dict[str, Any]:
    """A row's columns as a dict: what `record` compares (secret columns are redacted there)."""
    return {attribute.key: getattr(row, attribute.key) for attribute in inspect(row).mapper.column_attrs}


async def entries(
    session: AsyncSession,
    org_id: str,
    filters: Mapping[str, str | None],
    since: datetime | None,
    until: datetime | None,
    limit: int,
    after: tuple[datetime, int] | None,
) -> list[AuditEntry]:
    """Newest first by time (an entry's `at` is its transaction's start, and the id orders the
    entries of one instant), so that each filter, with a time window or without, reads its page
    from one index; `filters` are exact matches on AuditEntry columns; `after` is the (at, id) of
    the previous page's last entry."""
    query = select(AuditEntry).where(AuditEntry.org_id == org_id)
    for column, value in filters.items():
        if value is not None:
            query = query.where(getattr(AuditEntry, column) == value)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    return await newest_first(session, query, AuditEntry.at, AuditEntry.id, limit, after)
