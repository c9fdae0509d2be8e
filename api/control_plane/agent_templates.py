"""Agent templates and their versions, in projects, versioned like workflows.

A version is editable while it is a `draft`; once proposed for activation (a change request) or
activated it is frozen, so what an Approver approved and what deployed agents run is exactly what
the version holds. Unlike a workflow's, an older active version does not stop anything when a newer
one is activated: it becomes `superseded`, and the agents deployed from it keep running it until a
person upgrades them. Archiving a version takes it out of service: every agent running it pauses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.control_plane import audit
from api.control_plane.actors import Actor, Scope
from api.control_plane.ids import new_id
from api.control_plane.organizations import default_project, get_project
from api.control_plane.rows import newest_first, one, scoped
from api.control_plane.tables import AgentTemplate, AgentTemplateVersion, ChangeRequest
from api.problems import Problem, invalid, not_found
from streams.state.secret_box import SecretBox

DEPLOYABLE = frozenset({"active", "superseded"})
"""Versions an agent may be deployed from or upgraded to: activated once, not archived."""
CREDENTIAL_FIELD = "$.summary_credential"


def _summary_url(definition: dict[str, Any]) -> str | None:
    summary = definition.get("summary") or {}
    return summary.get("url") if summary.get("kind") == "openai_compatible" else None


def sealed_credential(
    box: SecretBox, given: str | None, definition: dict[str, Any], previous: AgentTemplateVersion | None
) -> str | None:
    """What a version stores as its summary provider's credential: the one given, sealed ("" for
    none); else the previous version's (the draft edited, or the latest for a new version) while the
    provider's URL stays the same. A credential never follows its provider to another URL on its
    own: whoever may edit a template must not be able to send the stored credential to a server of
    their own by changing the URL alone, so a new URL needs the credential again (a 422), as a CRM
    connection's new `base_url` does. A template whose summaries are built in keeps none."""
    url = _summary_url(definition)
    if given is not None:
        if given and url is None:
            message = "a credential is sent only to an openai_compatible summary provider"
            raise invalid([{"field": CREDENTIAL_FIELD, "message": message}])
        return box.seal(given) if given else None
    if previous is None or previous.summary_credential is None or url is None:
        return None
    if _summary_url(previous.definition) != url:
        message = 'a new summary provider URL needs the credential again (or "" for none): it goes where the URL points'
        raise invalid([{"field": CREDENTIAL_FIELD, "message": message}])
    return previous.summary_credential


async def create(
    session: AsyncSession,
    scope: Scope,
    actor: Actor,
    project_id: str | None,
    name: str,
    definition: dict[str, Any],
    copied_from: str | None,
    box: SecretBox,
    credential: str | None,
) -> tuple[AgentTemplate, AgentTemplateVersion]:
    """Version 1, a draft, in the given project, else the key's, else the org's default one. A copy
    never takes its source's credential: it is given again."""
    project_id = project_id or scope.project_id
    project = (
        await get_project(session, scope, project_id) if project_id else await default_project(session, scope.org_id)
    )
    template = AgentTemplate(
        id=new_id("atp"),
        org_id=scope.org_id,
        project_id=project.id,
        name=name,
        copied_from=copied_from,
        status="draft",
        latest_version=1,
    )
    session.add(template)
    await session.flush()
    sealed = sealed_credential(box, credential, definition, None)
    version = _new_version(scope, actor, template.id, 1, definition, sealed)
    session.add(version)
    await session.flush()
    await session.refresh(template)
    await session.refresh(version)
    audit.record(
        session,
        scope.org_id,
        actor,
        "agent_template.create",
        ("agent_template", template.id),
        after={**audit.snapshot(template), "definition": definition, **_credential_note(version)},
        project_id=project.id,
    )
    return template, version


def _new_version(
    scope: Scope, actor: Actor, template_id: str, number: int, definition: dict[str, Any], credential: str | None
) -> AgentTemplateVersion:
    return AgentTemplateVersion(
        template_id=template_id,
        version=number,
        org_id=scope.org_id,
        status="draft",
        definition=definition,
        authored_by=actor.id,
        authored_by_user_id=actor.user_id,
        summary_credential=credential,
    )


def _credential_note(version: AgentTemplateVersion) -> dict[str, bool]:
    """What the audit log says of a version's credential: whether there is one, never the sealed text."""
    return {"has_summary_credential": version.summary_credential is not None}


async def get(session: AsyncSession, scope: Scope, template_id: str, lock: bool = False) -> AgentTemplate:
    return await one(session, AgentTemplate, "agent template", scope.org_id, template_id, scope.project_id, lock)


async def changeable(session: AsyncSession, scope: Scope, template_id: str) -> AgentTemplate:
    template = await get(session, scope, template_id, lock=True)
    if template.status == "archived":
        raise Problem(409, "archived", "Agent template archived", "an archived template can be read, not changed")
    return template


async def list_templates(
    session: AsyncSession,
    scope: Scope,
    project_id: str | None,
    status: str | None,
    limit: int,
    after: tuple[datetime, str] | None,
) -> list[AgentTemplate]:
    query = scoped(AgentTemplate, scope, (AgentTemplate.project_id, project_id), (AgentTemplate.status, status))
    return await newest_first(session, query, AgentTemplate.created_at, AgentTemplate.id, limit, after)


async def list_versions(session: AsyncSession, scope: Scope, template_id: str) -> list[AgentTemplateVersion]:
    await get(session, scope, template_id)
    query = (
        select(AgentTemplateVersion)
        .where(AgentTemplateVersion.template_id == template_id)
        .order_by(AgentTemplateVersion.version)
    )
    return list((await session.scalars(query)).all())


async def get_version(
    session: AsyncSession, scope: Scope, template_id: str, number: int, lock: bool = False
) -> AgentTemplateVersion:
    await get(session, scope, template_id)
    query = select(AgentTemplateVersion).where(
        AgentTemplateVersion.template_id == template_id, AgentTemplateVersion.version == number
    )
    version = await session.scalar(query.with_for_update() if lock else query)
    if version is None:
        raise not_found("agent template version", f"{template_id}@{number}")
    return version


async def add_version(
    session: AsyncSession,
    scope: Scope,
    actor: Actor,
    template_id: str,
    definition: dict[str, Any],
    box: SecretBox,
    credential: str | None,
) -> AgentTemplateVersion:
    """A new draft; without a credential it keeps the latest version's while the provider's URL is
    the same."""
    template = await changeable(session, scope, template_id)
    latest = await get_version(session, scope, template_id, template.latest_version)
    sealed = sealed_credential(box, credential, definition, latest)
    template.latest_version += 1
    template.updated_at = func.now()
    version = _new_version(scope, actor, template_id, template.latest_version, definition, sealed)
    session.add(version)
    await session.flush()
    await session.refresh(version)
    audit.record(
        session,
        scope.org_id,
        actor,
        "agent_template.version.create",
        ("agent_template", template_id),
        after={"version": version.version, "definition": definition, **_credential_note(version)},
        project_id=template.project_id,
    )
    return version


async def edit_draft(
    session: AsyncSession,
    scope: Scope,
    actor: Actor,
    template_id: str,
    number: int,
    definition: dict[str, Any],
    box: SecretBox,
    credential: str | None,
) -> AgentTemplateVersion:
    template = await changeable(session, scope, template_id)
    version = await get_version(session, scope, template_id, number, lock=True)
    if version.status != "draft":
        raise Problem(
            409,
            "frozen",
            "Version frozen",
            f"version {number} is {version.status}; add a new version to change the template",
        )
    before = {"version": number, "definition": version.definition, **_credential_note(version)}
    version.summary_credential = sealed_credential(box, credential, definition, version)
    version.definition = definition
    version.authored_by, version.authored_by_user_id = actor.id, actor.user_id
    await session.flush()
    audit.record(
        session,
        scope.org_id,
        actor,
        "agent_template.version.update",
        ("agent_template", template_id),
        before,
        {"version": number, "definition": definition, **_credential_note(version)},
        project_id=template.project_id,
    )
    return version


async def refuse_while_a_request_is_open(session: AsyncSession, template_id: str) -> None:
    already = await session.scalar(
        select(ChangeRequest.id).where(
            ChangeRequest.agent_template_id == template_id,
            ChangeRequest.kind == "agent_template.activate",
            ChangeRequest.status == "open",
        )
    )
    if already is not None:
        raise Problem(
            409,
            "change-request-open",
            "A change request is open",
            f"{already} is still open for this template; cancel it or wait for its decision",
            change_request_id=already,
        )


async def activate(
    session: AsyncSession,
    scope: Scope,
    actor: Actor,
    template_id: str,
    number: int,
    change_request_id: str | None = None,
) -> AgentTemplate:
    """Makes `number` the version new agents deploy from; agents on the previous one keep it."""
    template = await changeable(session, scope, template_id)
    target = await get_version(session, scope, template_id, number, lock=True)
    if target.status not in ("draft", "proposed"):
        raise Problem(409, "not-a-draft", "Not a draft", f"version {number} is {target.status}")
    before = audit.snapshot(template)
    now = datetime.now(UTC)
    if template.active_version is not None:
        old = await get_version(session, scope, template_id, template.active_version, lock=True)
        if old.status == "active":
            old.status = "superseded"
    target.status, target.activated_at = "active", now
    template.status, template.active_version, template.updated_at = "active", number, now
    await session.flush()
    audit.record(
        session,
        scope.org_id,
        actor,
        "agent_template.activate",
        ("agent_template", template_id),
        before,
        {**audit.snapshot(template), "change_request_id": change_request_id},
        project_id=template.project_id,
    )
    return template


async def archive_version(
    session: AsyncSession,
    scope: Scope,
    actor: Actor,
    template_id: str,
    number: int,
) -> AgentTemplateVersion:
    """Takes a version out of service: no agent deploys from or upgrades to it again. The caller
    pauses the agents running it in the same transaction (`agents.pause_running`)."""
    template = await changeable(session, scope, template_id)
    version = await get_version(session, scope, template_id, number, lock=True)
    if version.status == "proposed":
        raise Problem(409, "change-request-open", "A change request is open", "cancel it before archiving")
    before = version.status
    version.status = "archived"
    if template.active_version == number:
        template.active_version = None
    template.updated_at = func.now()
    await session.flush()
    audit.record(
        session,
        scope.org_id,
        actor,
        "agent_template.version.archive",
        ("agent_template", template_id),
        {"version": number, "status": before},
        {"version": number, "status": "archived"},
        project_id=template.project_id,
    )
    return version
