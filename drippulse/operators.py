"""What an operator does from the command line, straight on the control plane: create organizations
(with their first admin) and users. Each is one transaction, audited with a `system:cli` actor."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select

from api.control_plane import api_keys, audit, organizations, people
from api.control_plane.actors import Scope, system
from api.control_plane.database import Database, migrate
from api.control_plane.tables import AgentTemplateVersion, InboundSource, IntegrationConnection, WebhookSubscription
from api.problems import Problem
from drippulse.settings import Settings, secret_box
from streams.state.secret_box import SecretBox

CLI = system("cli")
T = TypeVar("T")


class OperatorError(RuntimeError):
    """What went wrong, in words for the terminal."""


@dataclass(frozen=True)
class NewOrg:
    org_id: str
    project_id: str
    api_key: str
    admin_user_id: str | None = None
    admin_invitation: str | None = None


async def _create_org(database: Database, name: str, admin_email: str | None, admin_password: str | None) -> NewOrg:
    """With an admin, the bootstrap key acts for them, as any key acts for the person who issued it:
    what is done through it is theirs for four-eyes, and it stops while they are deactivated."""
    async with database.transaction() as session:
        org, project = await organizations.create_org(session, name, CLI)
        user_id, invitation = None, None
        if admin_email:
            user, invitation = await people.add_member(
                session, org.id, CLI, admin_email, "", ["admin", "editor", "approver"], admin_password
            )
            user_id = user.id
        _, secret = await api_keys.issue(session, Scope(org.id), CLI, "bootstrap admin key", "admin", acts_for=user_id)
    return NewOrg(org.id, project.id, secret, user_id, invitation)


async def _create_user(
    database: Database, org: str, email: str, name: str, roles: list[str], password: str | None
) -> tuple[str, str, str | None]:
    async with database.transaction() as session:
        found = await organizations.find_org(session, org)
        if found is None:
            raise OperatorError(f"no organization with id or unique name {org!r}")
        user, invitation = await people.add_member(session, found.id, CLI, email, name, roles, password)
    return found.id, user.id, invitation


def _run(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def go() -> T:
        database = Database(settings.database_url, pool_size=1)
        try:
            return await work(database)
        except Problem as problem:
            raise OperatorError(problem.detail or problem.title) from None
        finally:
            await database.close()

    migrate(settings.database_url)
    return asyncio.run(go())


def create_org(
    settings: Settings, name: str, admin_email: str | None = None, admin_password: str | None = None
) -> NewOrg:
    """An organization with its default project and a bootstrap admin API key; with `admin_email`, its
    first person, with the Admin, Editor and Approver roles (a password, or an invitation to set one),
    for whom the key acts. Keys are issued here or by people in their sessions, never by a key."""
    return _run(settings, lambda db: _create_org(db, name, admin_email, admin_password))


def create_user(
    settings: Settings, org: str, email: str, name: str, roles: list[str], password: str | None
) -> tuple[str, str, str | None]:
    """(org id, user id, and without a password the invitation with which the person accepts)."""
    return _run(settings, lambda db: _create_user(db, org, email, name, roles, password))


async def _reseal(database: Database, box: SecretBox) -> dict[str, int]:
    resealed: dict[str, int] = {}
    async with database.transaction() as session:
        signed: list[WebhookSubscription | InboundSource] = [
            *(await session.scalars(select(WebhookSubscription).with_for_update())).all(),
            *(await session.scalars(select(InboundSource).with_for_update())).all(),
        ]
        for row in signed:
            row.secrets = [{**secret, "sealed": box.reseal(secret["sealed"])} for secret in row.secrets]
            resealed[row.org_id] = resealed.get(row.org_id, 0) + len(row.secrets)
        for connection in (await session.scalars(select(IntegrationConnection).with_for_update())).all():
            if connection.sealed_credentials:
                connection.sealed_credentials = box.reseal(connection.sealed_credentials)
                resealed[connection.org_id] = resealed.get(connection.org_id, 0) + 1
        credentialed = select(AgentTemplateVersion).where(AgentTemplateVersion.summary_credential.is_not(None))
        for version in (await session.scalars(credentialed.with_for_update())).all():
            if version.summary_credential:
                version.summary_credential = box.reseal(version.summary_credential)
                resealed[version.org_id] = resealed.get(version.org_id, 0) + 1
        for org_id, count in resealed.items():
            audit.record(session, org_id, CLI, "secrets.reseal", ("org", org_id), after={"resealed": count})
            await organizations.bump_revision(session, org_id)
    return resealed


def reseal_secrets(settings: Settings) -> int:
    """Seals every stored secret again with the newest key of DRIPPULSE_SECRET_KEY, in one
    transaction, so the older keys can be dropped. The number of secrets resealed."""
    box = secret_box(settings)
    return sum(_run(settings, lambda db: _reseal(db, box)).values())
