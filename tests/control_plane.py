"""Test access to the control plane beside the API: what a test sets up that the API refuses (a
subscription or connection aimed at a loopback test server) or reads that no route shows."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select, text, update

from api.control_plane import integrations, people, webhooks
from api.control_plane.actors import Scope, system
from api.control_plane.database import Database
from api.control_plane.tables import (
    AgentTemplateVersion,
    ApiKey,
    Approval,
    ScheduleFire,
    User,
    Workflow,
    WorkflowVersion,
)
from drippulse.settings import Settings, secret_box
from processors.learned_model import LearnedModel
from streams.state.control_plane import connect
from streams.state.lead_models import Checkpoint, ModelStore

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
    """Moves a connection to `url` with its token, sent again as a move requires."""
    box = secret_box(settings)

    async def update(database: Database) -> None:
        async with database.transaction() as session:
            sealed = (await integrations.get(session, org_id, connection_id)).sealed_credentials
            token = box.open(sealed) if sealed else None
            await integrations.update(session, Scope(org_id), TEST, box, connection_id, {"base_url": url}, token)

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


def store_password_hash(settings: Settings, user_id: str, password_hash: str) -> None:
    """Stores a password hash as is: one made with other Argon2 parameters than the API's."""

    async def store(database: Database) -> None:
        async with database.transaction() as session:
            await session.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))

    run(settings, store)


def store_definition(settings: Settings, workflow_id: str, version: int, definition: dict[str, Any]) -> None:
    """Replaces a stored version's definition as is: one stored under older rules than today's."""

    async def store(database: Database) -> None:
        async with database.transaction() as session:
            await session.execute(
                update(WorkflowVersion)
                .where(WorkflowVersion.workflow_id == workflow_id, WorkflowVersion.version == version)
                .values(definition=definition)
            )

    run(settings, store)


def expire_key(settings: Settings, key_id: str) -> None:
    """Moves a key's expiry into the past (the API refuses to issue an already expired key)."""

    async def expire(database: Database) -> None:
        async with database.transaction() as session:
            await session.execute(
                update(ApiKey).where(ApiKey.id == key_id).values(expires_at=datetime.now(UTC) - timedelta(hours=1))
            )

    run(settings, expire)


NOBODYS_PARTITION = 10_000
"""An inbox partition no orchestrator owns: what `open_approval` holds is never acted on."""


def open_approval(
    settings: Settings, org_id: str, workflow_id: str, approvers: list[str], step: str = "4.0.0", held: bool = True
) -> str:
    """An approval as the orchestrator opens it, with the execution it holds (`held`), for an
    execution that never ran (its id)."""

    async def open_(database: Database) -> str:
        approval_id = f"apr_{uuid.uuid4().hex}"
        execution_id = str(uuid.uuid4())
        async with database.transaction() as session:
            workflow = await session.get(Workflow, workflow_id)
            assert workflow is not None
            now = datetime.now(UTC)
            if held:
                suspension = {
                    "execution": {"execution_id": execution_id, "org_id": org_id},
                    "context": {},
                    "step": step,
                    "kind": "approval",
                    "due_at_ms": round((now + timedelta(hours=1)).timestamp() * 1000),
                    "approvers": approvers,
                }
                await session.execute(
                    text(
                        "INSERT INTO held_executions (execution_id, org_id, partition, kind, step, due_at, suspension) "
                        "VALUES (:id, :org, :partition, 'approval', :step, :due, :suspension)"
                    ),
                    {
                        "id": execution_id,
                        "org": org_id,
                        "step": step,
                        "due": now + timedelta(hours=1),
                        "suspension": json.dumps(suspension),
                        "partition": NOBODYS_PARTITION,
                    },
                )
            session.add(
                Approval(
                    id=approval_id,
                    org_id=org_id,
                    project_id=workflow.project_id,
                    workflow_id=workflow_id,
                    workflow_version=1,
                    execution_id=execution_id,
                    step=step,
                    lead_id="l-1",
                    lead={"lead_id": "l-1", "email": "ada@acme.io"},
                    explanation={
                        "score": 70,
                        "score_breakdown": {"senior_title": 70},
                        "tier": "A",
                        "owner": "alice@acme.test",
                        "routing_reason": "",
                        "decisions": [],
                        "actions": [],
                    },
                    approvers=approvers,
                    status="pending",
                    requested_at=now,
                    due_at=now + timedelta(hours=1),
                    partition=NOBODYS_PARTITION,
                )
            )
        return approval_id

    return run(settings, open_)


def schedule_fires(settings: Settings, workflow_id: str) -> list[dict[str, Any]]:
    """The fire times claimed for a workflow, oldest first: fire_at_ms, completed, leads, claimed_by."""

    async def read(database: Database) -> list[dict[str, Any]]:
        async with database.transaction() as session:
            rows = await session.scalars(
                select(ScheduleFire).where(ScheduleFire.workflow_id == workflow_id).order_by(ScheduleFire.fire_at)
            )
            return [
                {
                    "fire_at_ms": round(row.fire_at.timestamp() * 1000),
                    "completed": row.completed_at is not None,
                    "leads": row.leads,
                    "claimed_by": row.claimed_by,
                }
                for row in rows
            ]

    return run(settings, read)


def checkpoint_model(settings: Settings, org_id: str, model: LearnedModel, version: int = 1) -> None:
    """A version of the org's learned model, written as the trainer writes one."""
    store = ModelStore(connect(settings.database_url), "test-trainer", kept_versions=100)
    store.checkpoint(Checkpoint({org_id: (version, model)}, {}, {}))


def stored_summary_credential(settings: Settings, template_id: str, version: int) -> str | None:
    """What PostgreSQL holds as a template version's summary credential (no route shows it)."""

    async def read(database: Database) -> str | None:
        async with database.transaction() as session:
            query = select(AgentTemplateVersion.summary_credential).where(
                AgentTemplateVersion.template_id == template_id, AgentTemplateVersion.version == version
            )
            stored: str | None = (await session.execute(query)).scalar_one()
            return stored

    return run(settings, read)
