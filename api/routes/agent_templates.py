"""Agent templates: the built-in ones (read-only, copied into a project to be used) and an org's own,
versioned like workflows. Activating a version is a template change, which is human-controlled: an
agent key's activation, and any where the project's policy says so, opens a change request for an
Approver instead."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator

from api.agent_budgets import announce_paused
from api.control_plane import agent_templates, agents, change_requests, organizations
from api.control_plane.tables import AgentTemplate, AgentTemplateVersion
from api.cursors import PageCursor, PageLimit, after_cursor, row_page
from api.definitions import template_definition
from api.deps import AgentTemplatesActivate, AgentTemplatesAuthor, AgentTemplatesRead, Box, Db, Schedule, SettingsDep
from api.destinations import refuse_unsafe
from api.models import MAX_VERSION, Items, StrictBody, ms, required_ms
from api.permissions import Principal
from api.problems import not_found, responses
from api.routes.change_requests import ChangeRequestOut, change_request_out
from drippulse.settings import Settings
from processors.change_control import template_change_needs_approval
from processors.templates import BUILTIN_AGENT_TEMPLATES

router = APIRouter(prefix="/api/v1/agent_templates", tags=["agent templates"], responses=responses(401, 403, 422))
BUILTIN = "builtin:"
TemplateStatus = Literal["builtin", "draft", "active", "archived"]
VersionNumber = Annotated[int, Path(ge=1, le=MAX_VERSION)]
SummaryCredential = Annotated[
    str | None,
    Field(
        default=None,
        max_length=4000,
        description="Write-only: the summary provider's credential (sent as `Authorization: Bearer …`), stored "
        "sealed, never returned. Omitted: the previous version's is kept while the provider's URL is the same (a "
        'new URL needs it again: 422); "": none. Only for an `openai_compatible` provider.',
    ),
]
HAS_CREDENTIAL = Field(description="Whether the version holds a summary provider credential (never shown).")


class AgentTemplateOut(BaseModel):
    id: str = Field(description="`builtin:<key>` for a built-in template.")
    project_id: str | None = Field(description="Null for a built-in template.")
    name: str
    purpose: str
    status: TemplateStatus
    active_version: int | None = Field(description="The version new agents deploy from.")
    latest_version: int | None
    copied_from: str | None
    input_schema: dict[str, Any] = Field(description="JSON Schema (2020-12) of the lead an invocation carries.")
    definition: dict[str, Any] = Field(description="The latest version's definition (a built-in's own).")
    has_summary_credential: bool = HAS_CREDENTIAL
    created_at_ms: int | None
    updated_at_ms: int | None


class TemplatesPage(BaseModel):
    builtin: list[AgentTemplateOut] = Field(description="DripPulse's built-in templates (on the first page only).")
    items: list[AgentTemplateOut] = Field(description="The organization's own templates, newest first.")
    next_cursor: str | None = Field(description="Pass back as `cursor` for the next page; null on the last page.")


class TemplateVersionOut(BaseModel):
    version: int
    status: Literal["draft", "proposed", "active", "superseded", "archived"] = Field(
        description="proposed: frozen while a change request for it is open; superseded: a newer version is the "
        "active one, agents deployed from this one keep running it"
    )
    definition: dict[str, Any]
    has_summary_credential: bool = HAS_CREDENTIAL
    authored_by: str
    created_at_ms: int
    activated_at_ms: int | None


class ArchivedVersion(TemplateVersionOut):
    paused_agents: list[str] = Field(description="Agents that ran this version, now paused (`template_archived`).")


class TemplateCreate(StrictBody):
    name: str | None = Field(default=None, min_length=1, max_length=200, description="Defaults to the definition's.")
    project_id: str | None = Field(default=None, description="Defaults to the key's project, else the default one.")
    definition: dict[str, Any] | None = Field(default=None, description="An agent template definition.")
    copy_of: str | None = Field(
        default=None, max_length=200, description="`builtin:<key>`, or the id of another template of the organization."
    )
    summary_credential: SummaryCredential = None

    @model_validator(mode="after")
    def _one_source(self) -> TemplateCreate:
        if (self.definition is None) == (self.copy_of is None):
            raise ValueError("give either 'definition' or 'copy_of'")
        return self


class VersionCreate(StrictBody):
    definition: dict[str, Any] = Field(description="An agent template definition.")
    summary_credential: SummaryCredential = None


class TemplateActivate(StrictBody):
    reason: str = Field(default="", max_length=2000, description="Why; shown to the Approver when approval is needed.")


def _builtin(key: str) -> AgentTemplateOut:
    definition: dict[str, Any] = BUILTIN_AGENT_TEMPLATES[key]()
    return AgentTemplateOut(
        id=BUILTIN + key,
        project_id=None,
        name=definition["name"],
        purpose=definition["purpose"],
        status="builtin",
        active_version=None,
        latest_version=None,
        copied_from=None,
        input_schema=definition["input_schema"],
        definition=definition,
        has_summary_credential=False,
        created_at_ms=None,
        updated_at_ms=None,
    )


def _template_out(template: AgentTemplate, latest: AgentTemplateVersion) -> AgentTemplateOut:
    return AgentTemplateOut(
        id=template.id,
        project_id=template.project_id,
        name=template.name,
        purpose=latest.definition.get("purpose", ""),
        status=template.status,
        active_version=template.active_version,
        latest_version=template.latest_version,
        copied_from=template.copied_from,
        input_schema=latest.definition.get("input_schema", {}),
        definition=latest.definition,
        has_summary_credential=latest.summary_credential is not None,
        created_at_ms=required_ms(template.created_at),
        updated_at_ms=required_ms(template.updated_at),
    )


def _version_out(version: AgentTemplateVersion) -> TemplateVersionOut:
    return TemplateVersionOut(
        version=version.version,
        status=version.status,
        definition=version.definition,
        has_summary_credential=version.summary_credential is not None,
        authored_by=version.authored_by,
        created_at_ms=required_ms(version.created_at),
        activated_at_ms=ms(version.activated_at),
    )


async def _stored(definition: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """A definition as stored, its summary provider's URL refused (422 naming it) unless it is one
    DripPulse may call (the SSRF guard; checked again at each call)."""
    stored = template_definition(definition, settings.schedule_min_interval_s)
    summary = stored.get("summary") or {}
    if summary.get("kind") == "openai_compatible":
        await refuse_unsafe(summary["url"], settings, "$.definition.summary.url")
    return stored


async def _out(database: Db, principal: Principal, template_id: str) -> AgentTemplateOut:
    async with database.transaction() as session:
        template = await agent_templates.get(session, principal.scope, template_id)
        latest = await agent_templates.get_version(session, principal.scope, template_id, template.latest_version)
    return _template_out(template, latest)


@router.get("", response_model=TemplatesPage, responses=responses(400))
async def list_templates(
    principal: AgentTemplatesRead,
    database: Db,
    project_id: str | None = None,
    status: Literal["draft", "active", "archived"] | None = None,
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> TemplatesPage:
    """The built-in templates with their input schemas, then the organization's own, newest first."""
    async with database.transaction() as session:
        found = await agent_templates.list_templates(
            session, principal.scope, project_id, status, limit + 1, after_cursor(cursor)
        )
        latest = {
            t.id: await agent_templates.get_version(session, principal.scope, t.id, t.latest_version)
            for t in found[:limit]
        }
    page = row_page(found, limit, lambda t: (t.created_at, t.id), lambda t: _template_out(t, latest[t.id]))
    builtin = [_builtin(key) for key in BUILTIN_AGENT_TEMPLATES] if cursor is None else []
    return TemplatesPage(builtin=builtin, items=page.items, next_cursor=page.next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AgentTemplateOut, responses=responses(404))
async def create_template(
    body: TemplateCreate, principal: AgentTemplatesAuthor, database: Db, settings: SettingsDep, box: Box
) -> AgentTemplateOut:
    """Version 1, a draft: from a definition, or a copy of a built-in template or of another template
    of the organization (its active version, else its latest), to edit before activating it."""
    source = await _copied(database, principal, body.copy_of) if body.copy_of else body.definition or {}
    definition = await _stored(source, settings)
    async with database.transaction() as session:
        template, _ = await agent_templates.create(
            session,
            principal.scope,
            principal.actor,
            body.project_id,
            body.name or definition["name"],
            definition,
            body.copy_of,
            box,
            body.summary_credential,
        )
    return await _out(database, principal, template.id)


async def _copied(database: Db, principal: Principal, copy_of: str) -> dict[str, Any]:
    """The definition a copy starts from (never the source's credential: a copy is given its own)."""
    if copy_of.startswith(BUILTIN):
        make = BUILTIN_AGENT_TEMPLATES.get(copy_of.removeprefix(BUILTIN))
        if make is None:
            raise not_found("agent template", copy_of)
        built: dict[str, Any] = make()
        return built
    async with database.transaction() as session:
        source = await agent_templates.get(session, principal.scope, copy_of)
        number = source.active_version or source.latest_version
        return (await agent_templates.get_version(session, principal.scope, copy_of, number)).definition


@router.get("/{template_id}", response_model=AgentTemplateOut, responses=responses(404))
async def get_template(template_id: str, principal: AgentTemplatesRead, database: Db) -> AgentTemplateOut:
    if template_id.startswith(BUILTIN):
        if template_id.removeprefix(BUILTIN) not in BUILTIN_AGENT_TEMPLATES:
            raise not_found("agent template", template_id)
        return _builtin(template_id.removeprefix(BUILTIN))
    return await _out(database, principal, template_id)


@router.get("/{template_id}/versions", response_model=Items[TemplateVersionOut], responses=responses(404))
async def list_versions(template_id: str, principal: AgentTemplatesRead, database: Db) -> Items[TemplateVersionOut]:
    async with database.transaction() as session:
        found = await agent_templates.list_versions(session, principal.scope, template_id)
    return Items(items=[_version_out(v) for v in found])


@router.get("/{template_id}/versions/{version}", response_model=TemplateVersionOut, responses=responses(404))
async def get_version(
    template_id: str, version: VersionNumber, principal: AgentTemplatesRead, database: Db
) -> TemplateVersionOut:
    async with database.transaction() as session:
        return _version_out(await agent_templates.get_version(session, principal.scope, template_id, version))


@router.post(
    "/{template_id}/versions",
    status_code=status.HTTP_201_CREATED,
    response_model=TemplateVersionOut,
    responses=responses(404, 409),
)
async def add_version(
    template_id: str,
    body: VersionCreate,
    principal: AgentTemplatesAuthor,
    database: Db,
    settings: SettingsDep,
    box: Box,
) -> TemplateVersionOut:
    """A new draft version; agents keep running theirs until upgraded. It keeps the latest version's
    summary credential unless given one (see `summary_credential`)."""
    definition = await _stored(body.definition, settings)
    async with database.transaction() as session:
        version = await agent_templates.add_version(
            session, principal.scope, principal.actor, template_id, definition, box, body.summary_credential
        )
    return _version_out(version)


@router.patch("/{template_id}/versions/{version}", response_model=TemplateVersionOut, responses=responses(404, 409))
async def edit_version(
    template_id: str,
    version: VersionNumber,
    body: VersionCreate,
    principal: AgentTemplatesAuthor,
    database: Db,
    settings: SettingsDep,
    box: Box,
) -> TemplateVersionOut:
    """Replaces a draft's definition; 409 `frozen` once proposed or activated."""
    definition = await _stored(body.definition, settings)
    async with database.transaction() as session:
        edited = await agent_templates.edit_draft(
            session, principal.scope, principal.actor, template_id, version, definition, box, body.summary_credential
        )
    return _version_out(edited)


@router.post(
    "/{template_id}/versions/{version}/activate",
    response_model=AgentTemplateOut,
    responses={
        202: {"model": ChangeRequestOut, "description": "Approval needed: a change request was opened instead."},
        **responses(404, 409),
    },
)
async def activate_version(
    template_id: str,
    version: VersionNumber,
    principal: AgentTemplatesActivate,
    database: Db,
    body: TemplateActivate | None = None,
) -> AgentTemplateOut | JSONResponse:
    """Makes the version the one new agents deploy from. An agent key's activation, and any where the
    project's policy (`agent_template_change_requires_approval`) says so, opens a change request for
    an Approver instead and answers 202 with it."""
    reason = body.reason if body else ""
    async with database.transaction() as session:
        template = await agent_templates.changeable(session, principal.scope, template_id)
        project = await organizations.get_project(session, principal.scope, template.project_id)
        if template_change_needs_approval(organizations.policy_of(project), principal.agent):
            request = await change_requests.open_template_activation(
                session, principal.scope, principal.actor, template, version, reason
            )
            return JSONResponse(change_request_out(request).model_dump(mode="json"), status_code=202)
        await agent_templates.activate(session, principal.scope, principal.actor, template_id, version)
    return await _out(database, principal, template_id)


@router.post("/{template_id}/versions/{version}/archive", response_model=ArchivedVersion, responses=responses(404, 409))
async def archive_version(
    template_id: str, version: VersionNumber, principal: AgentTemplatesActivate, database: Db, schedule: Schedule
) -> ArchivedVersion:
    """Takes the version out of service (the safe direction: no approval): no agent deploys from or
    upgrades to it, and the agents running it pause with reason `template_archived` (each announced
    as `agent.paused`)."""
    async with database.transaction() as session:
        archived = await agent_templates.archive_version(
            session, principal.scope, principal.actor, template_id, version
        )
        paused = await agents.pause_running(session, principal.org_id, template_id, version, principal.actor)
    for agent in paused:
        await announce_paused(database, schedule, agent)
    return ArchivedVersion(**_version_out(archived).model_dump(), paused_agents=[agent.id for agent in paused])
