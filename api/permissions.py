"""Who may do what: the one permission matrix, and the principal a request acts as.

Every route declares its action with `api.deps.allowed(Action...)`; that dependency is the only
place roles are checked, and the README prints `MATRIX` (a test holds the two equal, and another
calls every route as every kind of caller). Roles are listed explicitly per action rather than
ranked: Admin and Editor include what a Viewer reads, and deciding a change request belongs to
Approvers alone, so the person who asked for a change can never wave it through with another role.
Some actions are people's acts, never a key's: deciding, issuing keys and changing who belongs. A key
that could issue keys could make ones that act for nobody, and four-eyes compares people; issuing
the first key of an organization is the operator's CLI's (`drippulse orgs create`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from api.control_plane.actors import Actor, Scope


class Role(StrEnum):
    ADMIN = "admin"
    EDITOR = "editor"
    VIEWER = "viewer"
    APPROVER = "approver"


class Action(StrEnum):
    PUBLIC = "public"
    ACCOUNT = "account"
    PROJECTS_READ = "projects.read"
    PROJECTS_MANAGE = "projects.manage"
    WORKFLOWS_READ = "workflows.read"
    WORKFLOWS_AUTHOR = "workflows.author"
    WORKFLOWS_TEST = "workflows.test"
    WORKFLOWS_ACTIVATE = "workflows.activate"
    WORKFLOWS_RUN = "workflows.run"
    CHANGE_REQUESTS_READ = "change_requests.read"
    CHANGE_REQUESTS_DECIDE = "change_requests.decide"
    APPROVALS_READ = "approvals.read"
    APPROVALS_DECIDE = "approvals.decide"
    EXECUTIONS_READ = "executions.read"
    EVENTS_SEND = "events.send"
    WEBHOOKS_READ = "webhooks.read"
    WEBHOOKS_MANAGE = "webhooks.manage"
    INBOUND_SOURCES_READ = "inbound_sources.read"
    INBOUND_SOURCES_MANAGE = "inbound_sources.manage"
    INTEGRATIONS_READ = "integrations.read"
    INTEGRATIONS_MANAGE = "integrations.manage"
    CRM_COMMANDS_READ = "crm_commands.read"
    CRM_COMMANDS_RETRY = "crm_commands.retry"
    API_KEYS_MANAGE = "api_keys.manage"
    MEMBERS_MANAGE = "members.manage"
    AUDIT_READ = "audit.read"
    MODELS_READ = "models.read"
    MODELS_BACKTEST = "models.backtest"
    UNIT_PRICES_READ = "unit_prices.read"
    UNIT_PRICES_MANAGE = "unit_prices.manage"
    AGENT_TEMPLATES_READ = "agent_templates.read"
    AGENT_TEMPLATES_AUTHOR = "agent_templates.author"
    AGENT_TEMPLATES_ACTIVATE = "agent_templates.activate"
    AGENTS_READ = "agents.read"
    AGENTS_MANAGE = "agents.manage"
    AGENTS_INVOKE = "agents.invoke"


ScopedKeys = Literal["own project", "yes", "no"]


@dataclass(frozen=True)
class Rule:
    roles: frozenset[Role]
    scoped_keys: ScopedKeys
    """What a project-scoped key may do: this action on its project's resources only ("own
    project"), this action as any key ("yes": it touches no project's resources), or nothing ("no":
    org-level management — keys, members, webhooks, integrations — needs an org-wide credential)."""
    people_only: bool = False
    """Only a person's session, never an API key (see the module docstring)."""
    description: str = ""


_ALL = frozenset(Role)
_AUTHORS = frozenset({Role.ADMIN, Role.EDITOR})
_ADMINS = frozenset({Role.ADMIN})

MATRIX: dict[Action, Rule] = {
    Action.PUBLIC: Rule(_ALL, "yes", description="no credentials: health, login, invitations, signed hooks"),
    Action.ACCOUNT: Rule(_ALL, "yes", description="who am I, log out"),
    Action.PROJECTS_READ: Rule(_ALL, "own project", description="list and read projects"),
    Action.PROJECTS_MANAGE: Rule(_ADMINS, "no", description="create, edit, delete projects and their policies"),
    Action.WORKFLOWS_READ: Rule(_ALL, "own project", description="workflows, versions, step types"),
    Action.WORKFLOWS_AUTHOR: Rule(_AUTHORS, "own project", description="create workflows, edit drafts, archive"),
    Action.WORKFLOWS_TEST: Rule(_AUTHORS, "own project", description="test runs and what-if replays (no side effects)"),
    Action.WORKFLOWS_ACTIVATE: Rule(
        _AUTHORS,
        "own project",
        description="activate (a change request where policy says so), deactivate, cancel requests",
    ),
    Action.WORKFLOWS_RUN: Rule(
        _AUTHORS, "own project", description="manual runs: real executions with side effects, on chosen leads"
    ),
    Action.CHANGE_REQUESTS_READ: Rule(_ALL, "own project", description="list and read change requests"),
    Action.CHANGE_REQUESTS_DECIDE: Rule(
        frozenset({Role.APPROVER}),
        "own project",
        people_only=True,
        description="approve or reject another person's change",
    ),
    Action.APPROVALS_READ: Rule(_ALL, "own project", description="approvals opened by approval steps"),
    Action.APPROVALS_DECIDE: Rule(
        frozenset({Role.ADMIN, Role.EDITOR, Role.APPROVER}),
        "own project",
        people_only=True,
        description="approve or reject an approval whose step names you or your role (role:approver by default)",
    ),
    Action.EXECUTIONS_READ: Rule(_ALL, "own project", description="execution history and summaries"),
    Action.EVENTS_SEND: Rule(_AUTHORS, "yes", description="send events (every active workflow of the org sees them)"),
    Action.WEBHOOKS_READ: Rule(_ALL, "no", description="webhook subscriptions and delivery history"),
    Action.WEBHOOKS_MANAGE: Rule(_AUTHORS, "no", description="manage subscriptions, test, replay deliveries"),
    Action.INBOUND_SOURCES_READ: Rule(_ALL, "no", description="inbound webhook sources"),
    Action.INBOUND_SOURCES_MANAGE: Rule(_AUTHORS, "no", description="manage inbound sources and their secrets"),
    Action.INTEGRATIONS_READ: Rule(_ALL, "no", description="integration connections"),
    Action.INTEGRATIONS_MANAGE: Rule(_ADMINS, "no", description="manage integration connections and credentials"),
    Action.CRM_COMMANDS_READ: Rule(_ALL, "no", description="CRM command results"),
    Action.CRM_COMMANDS_RETRY: Rule(_AUTHORS, "no", description="retry a failed CRM command"),
    Action.API_KEYS_MANAGE: Rule(_ADMINS, "no", people_only=True, description="issue, list, revoke API keys"),
    Action.MEMBERS_MANAGE: Rule(
        _ADMINS, "no", people_only=True, description="invite, change roles, deactivate members"
    ),
    Action.AUDIT_READ: Rule(_ADMINS, "no", description="the audit log"),
    Action.MODELS_READ: Rule(
        _ALL, "no", description="the org's learned lead model: versions, metrics, the weights that matter most"
    ),
    Action.MODELS_BACKTEST: Rule(
        _AUTHORS, "no", description="backtest the learned model against the rules over the org's history"
    ),
    Action.UNIT_PRICES_READ: Rule(_ALL, "yes", description="the org's unit prices: what executions cost"),
    Action.UNIT_PRICES_MANAGE: Rule(_ADMINS, "no", description="set the org's unit prices"),
    Action.AGENT_TEMPLATES_READ: Rule(
        _ALL, "own project", description="agent templates (the built-in ones too), their versions and input schemas"
    ),
    Action.AGENT_TEMPLATES_AUTHOR: Rule(
        _AUTHORS, "own project", description="create and copy agent templates, add and edit draft versions"
    ),
    Action.AGENT_TEMPLATES_ACTIVATE: Rule(
        _AUTHORS,
        "own project",
        description="activate an agent template version (always a change request for an agent key, and where "
        "policy says so), archive a version (pauses the agents running it)",
    ),
    Action.AGENTS_READ: Rule(
        _ALL, "own project", description="deployed agents, their executions, logs and metrics (costs included)"
    ),
    Action.AGENTS_MANAGE: Rule(
        _AUTHORS,
        "own project",
        description="deploy, rename, bind, pause, resume (an agent its budget paused: a person's session only), "
        "archive agents; upgrade them (always a change request for an agent key, and where policy says so)",
    ),
    Action.AGENTS_INVOKE: Rule(
        _AUTHORS,
        "own project",
        description="execute (real side effects), inference and score_lead (none) on a deployed agent",
    ),
}


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a person's session in one organization, or an API key."""

    org_id: str
    roles: frozenset[Role]
    actor: Actor
    project_id: str | None = None
    agent: bool = False
    session_id: str | None = None

    @property
    def scope(self) -> Scope:
        return Scope(self.org_id, self.project_id)

    @property
    def is_person(self) -> bool:
        """A person's own session; a key is not, even though it acts for the person who issued it."""
        return self.actor.is_person


class Refusal(Exception):
    """Why a principal may not take an action (a 403)."""


def check(principal: Principal, action: Action) -> None:
    rule = MATRIX[action]
    if rule.people_only and not principal.is_person:
        raise Refusal(f"{action} is done by a person (a login session), not an API key")
    if principal.project_id is not None and rule.scoped_keys == "no":
        raise Refusal(f"this key is scoped to project {principal.project_id}; {action} needs an org-wide credential")
    if not principal.roles & rule.roles:
        needed = " or ".join(sorted(rule.roles))
        raise Refusal(f"{action} needs the {needed} role")


def allows(principal: Principal, action: Action) -> bool:
    """Whether `check` would pass: for what a route shows, not whether it runs."""
    try:
        check(principal, action)
    except Refusal:
        return False
    return True


def matrix_markdown() -> str:
    """The matrix as the README prints it."""
    roles = [Role.ADMIN, Role.EDITOR, Role.VIEWER, Role.APPROVER]
    lines = [
        "| action | what | " + " | ".join(r.value.title() for r in roles) + " | project-scoped keys |",
        "|---|---|" + "---|" * (len(roles) + 1),
    ]
    for action, rule in MATRIX.items():
        if action is Action.PUBLIC:
            continue
        marks = ["yes" if role in rule.roles else "" for role in roles]
        scoped: str = rule.scoped_keys
        if rule.people_only:
            marks = [m and "yes (session)" for m in marks]
            scoped = "no"
        lines.append(f"| `{action.value}` | {rule.description} | " + " | ".join(marks) + f" | {scoped} |")
    return "\n".join(lines)
