"""What the workers read from the control plane (PostgreSQL), and the one thing they write to it.

Workers never query PostgreSQL per event. They keep each organization's configuration in memory and
check its `config_revision` at most every `refresh_s` seconds: one query for all the stale
organizations of a batch, and one more to reload those whose revision moved. The API bumps the
revision in the same transaction as the change, so there is no window in which a committed change
is invisible, nor one in which a worker sees a revision without its data: a crash right after the
commit leaves a change the next check finds, with no relay to run. The revision is read before the
data it describes, so a change committed between the two reads is only ever seen early, never lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import orjson
from psycopg.types.json import set_json_loads
from sqlalchemy import Connection, Engine, create_engine, event, text

T = TypeVar("T")


def connect(database_url: str) -> Engine:
    """A small pool: a worker holds one connection at a time, a few times a second at most. An error's
    message leaves the statement's parameters out: they hold lead data, and errors are logged."""
    engine = create_engine(database_url, pool_size=2, max_overflow=2, pool_pre_ping=True, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _orjson(connection: Any, _: Any) -> None:
        set_json_loads(orjson.loads, connection)

    return engine


class ControlPlaneReader:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def revisions(self, org_ids: list[str]) -> dict[str, int]:
        """The revision of each org that exists; an unknown org is absent (it has no configuration)."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                text("SELECT id, config_revision FROM organizations WHERE id = ANY(:ids)"), {"ids": org_ids}
            )
            return {org_id: int(revision) for org_id, revision in rows}

    def active_workflows(self, org_ids: list[str]) -> dict[str, list[tuple[str, int, dict[str, Any]]]]:
        """Per org: (workflow id, active version, its definition)."""
        found: dict[str, list[tuple[str, int, dict[str, Any]]]] = {org_id: [] for org_id in org_ids}
        with self._engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT w.org_id, w.id, v.version, v.definition FROM workflows w "
                    "JOIN workflow_versions v ON v.workflow_id = w.id AND v.version = w.active_version "
                    "WHERE w.org_id = ANY(:ids) AND w.status = 'active'"
                ),
                {"ids": org_ids},
            )
            for org_id, workflow_id, version, definition in rows:
                found[org_id].append((workflow_id, int(version), definition))
        return found

    def agents(self, org_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Per org: its deployed agents (`id`, `workflow_id`, `status`, `paused_reason`, and the
        `input_schema` of the template version each runs), what `agent` steps call."""
        return self._rows_per_org(
            "SELECT a.org_id, a.id, a.workflow_id, a.status, a.paused_reason, "
            "v.definition->'input_schema' AS input_schema FROM agents a JOIN agent_template_versions v "
            "ON v.template_id = a.template_id AND v.version = a.template_version WHERE a.org_id = ANY(:ids)",
            org_ids,
        )

    def workflow_version(self, org_id: str, workflow_id: str, version: int) -> dict[str, Any] | None:
        """One version's definition, active or not: a paused execution resumes on the version it
        started with."""
        with self._engine.connect() as connection:
            definition: dict[str, Any] | None = connection.execute(
                text(
                    "SELECT definition FROM workflow_versions "
                    "WHERE org_id = :org AND workflow_id = :id AND version = :version"
                ),
                {"org": org_id, "id": workflow_id, "version": version},
            ).scalar()
        return definition

    def scheduled_workflows(self) -> list[tuple[str, str, int, dict[str, Any], datetime | None]]:
        """Every org's active workflows whose trigger has a schedule: (org id, workflow id, active
        version, the schedule, when that version was activated)."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT w.org_id, w.id, v.version, v.definition->'trigger'->'schedule', v.activated_at "
                    "FROM workflows w JOIN workflow_versions v "
                    "ON v.workflow_id = w.id AND v.version = w.active_version "
                    "WHERE w.status = 'active' AND jsonb_typeof(v.definition->'trigger'->'schedule') = 'object'"
                )
            ).all()
        return [
            (org_id, workflow_id, int(version), schedule, at) for org_id, workflow_id, version, schedule, at in rows
        ]

    def webhook_subscriptions(self, org_ids: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """Per org: webhook id -> subscription (url, event types, enabled, sealed secrets)."""
        found: dict[str, dict[str, dict[str, Any]]] = {org_id: {} for org_id in org_ids}
        with self._engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT org_id, id, url, event_types, enabled, disabled_reason, secrets "
                    "FROM webhook_subscriptions WHERE org_id = ANY(:ids)"
                ),
                {"ids": org_ids},
            )
            for row in rows.mappings():
                found[row["org_id"]][row["id"]] = dict(row)
        return found

    def integration_connections(self, org_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Per org: its enabled connections, oldest first."""
        return self._rows_per_org(
            "SELECT org_id, id, type, base_url, sealed_credentials, rate_limit_per_s, burst "
            "FROM integration_connections WHERE org_id = ANY(:ids) AND enabled ORDER BY created_at, id",
            org_ids,
        )

    def _rows_per_org(self, query: str, org_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The rows of `query` (which selects `org_id` and filters on `:ids`) grouped by org, in
        the query's order; an org without rows has an empty list."""
        found: dict[str, list[dict[str, Any]]] = {org_id: [] for org_id in org_ids}
        with self._engine.connect() as connection:
            for row in connection.execute(text(query), {"ids": org_ids}).mappings():
                found[row["org_id"]].append(dict(row))
        return found

    def quarantine_workflow(self, org_id: str, workflow_id: str, version: int, reason: str) -> bool:
        """Takes a workflow whose active version no longer compiles out of the active set, so one bad
        definition cannot stop the worker for every org: the status, the reason, an audit entry and
        the revision in one transaction. False when it is no longer that active version."""
        with self._engine.begin() as connection:
            quarantined = connection.execute(
                text(
                    "UPDATE workflows SET status = 'quarantined', quarantine_reason = :reason, updated_at = now() "
                    "WHERE org_id = :org AND id = :id AND status = 'active' AND active_version = :version "
                    "RETURNING project_id"
                ),
                {"org": org_id, "id": workflow_id, "version": version, "reason": reason},
            ).first()
            if quarantined is None:
                return False
            self._changed(
                connection,
                org_id,
                ("system:workflow-catalog", "workflow catalog"),
                "workflow.quarantine",
                ("workflow", workflow_id),
                {"status": "active"},
                {"status": "quarantined", "quarantine_reason": reason, "version": version},
                project_id=quarantined[0],
            )
        return True

    def disable_webhook(self, org_id: str, webhook_id: str, reason: str) -> bool:
        """The webhook worker's own decision (410 Gone, failing too long), recorded like any change: the
        subscription, the audit entry and the revision in one transaction. False when there was
        nothing to disable (deleted, or disabled already)."""
        with self._engine.begin() as connection:
            disabled = connection.execute(
                text(
                    "UPDATE webhook_subscriptions SET enabled = false, disabled_reason = :reason, updated_at = now() "
                    "WHERE org_id = :org AND id = :id AND enabled RETURNING id"
                ),
                {"org": org_id, "id": webhook_id, "reason": reason},
            ).first()
            if disabled is None:
                return False
            self._changed(
                connection,
                org_id,
                ("system:webhook-worker", "webhook worker"),
                "webhook.disable",
                ("webhook", webhook_id),
                {"enabled": True, "disabled_reason": None},
                {"enabled": False, "disabled_reason": reason},
            )
        return True

    @staticmethod
    def _changed(
        connection: Connection,
        org_id: str,
        actor: tuple[str, str],
        action: str,
        resource: tuple[str, str],
        before: dict[str, Any],
        after: dict[str, Any],
        project_id: str | None = None,
    ) -> None:
        """What every change a worker decides comes with, in its transaction: the organization's
        revision (so every worker sees it) and an audit entry by a system actor."""
        connection.execute(
            text("UPDATE organizations SET config_revision = config_revision + 1 WHERE id = :org"), {"org": org_id}
        )
        connection.execute(
            text(
                "INSERT INTO audit_log (org_id, actor_type, actor_id, actor_label, action, resource_type, "
                "resource_id, project_id, before, after) VALUES (:org, 'system', :actor, :label, :action, :type, "
                ":id, :project, CAST(:before AS jsonb), CAST(:after AS jsonb))"
            ),
            {
                "org": org_id,
                "actor": actor[0],
                "label": actor[1],
                "action": action,
                "type": resource[0],
                "id": resource[1],
                "project": project_id,
                "before": orjson.dumps(before).decode(),
                "after": orjson.dumps(after).decode(),
            },
        )


class Revisions(Protocol):
    def revisions(self, org_ids: list[str]) -> dict[str, int]:
        """A number per org that moves whenever what the cache holds for it changed; absent: none."""
        ...


class RevisionCache(Generic[T]):
    """Per-org values loaded by `load` and kept until the org's revision moves. `get` checks the
    revision of an org at most every `refresh_s`; all of a call's stale orgs share one query, and
    all of its changed orgs one load. `load` answers for every org it is asked about."""

    def __init__(self, reader: Revisions, load: Callable[[list[str]], dict[str, T]], refresh_s: float) -> None:
        self._reader = reader
        self._load = load
        self._refresh_s = refresh_s
        self._values: dict[str, T] = {}
        self._revisions: dict[str, int | None] = {}
        self._checked_at: dict[str, float] = {}

    def get(self, org_ids: Iterable[str]) -> dict[str, T]:
        wanted = set(org_ids)
        now = time.monotonic()
        stale = sorted(o for o in wanted if now - self._checked_at.get(o, -1e9) >= self._refresh_s)
        if stale:
            revisions = self._reader.revisions(stale)
            changed = [o for o in stale if o not in self._values or self._revisions.get(o) != revisions.get(o)]
            if changed:
                self._values.update(self._load(changed))
            for org_id in stale:
                self._revisions[org_id] = revisions.get(org_id)
                self._checked_at[org_id] = now
        return {org_id: self._values[org_id] for org_id in wanted}

    def fresh(self, org_id: str) -> T | None:
        """The cached value if it was checked within `refresh_s`, without any query; else None."""
        if time.monotonic() - self._checked_at.get(org_id, -1e9) < self._refresh_s:
            return self._values.get(org_id)
        return None

    def stale(self) -> list[str]:
        """Known orgs due for a revision check."""
        now = time.monotonic()
        return [o for o, checked in self._checked_at.items() if now - checked >= self._refresh_s]

    def forget(self, org_id: str) -> None:
        """The next `get` reloads this org (after this process changed it itself)."""
        self._checked_at.pop(org_id, None)
        self._values.pop(org_id, None)
