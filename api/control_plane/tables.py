"""The control plane's tables in PostgreSQL, its system of record.

Every row but a user's carries its `org_id`, and every store query filters on it, so one
organization never reads or writes another's rows. Secrets are never stored in the clear: API keys,
session and invitation tokens as SHA-256 hashes (they are 256-bit random), passwords as Argon2
hashes, signing secrets and CRM credentials sealed with Fernet.

`organizations.config_revision` is what the workers poll: every transaction that changes something
a worker reads (active workflow versions, webhook subscriptions, integration connections) increments
it in the same transaction, so a committed change is visible to the next check and an uncommitted
one never is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
        list[Any]: JSONB,
        list[str]: ARRAY(Text),  # PostgreSQL's: the generic ARRAY cannot express `contains` (@>)
        str: Text,
    }


def _now() -> Any:
    return mapped_column(server_default=func.now())


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str]
    created_at: Mapped[datetime] = _now()
    config_revision: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (
        Index("uq_projects_org_id_name", "org_id", "name", unique=True),
        Index("uq_projects_default", "org_id", unique=True, postgresql_where=text("is_default")),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str]
    description: Mapped[str] = mapped_column(server_default="")
    is_default: Mapped[bool] = mapped_column(server_default=text("false"))
    policy: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class User(Base):
    """A person. Global (one login across organizations); what they may do lives in memberships."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(unique=True, comment="lower-cased")
    name: Mapped[str] = mapped_column(server_default="")
    password_hash: Mapped[str | None] = mapped_column(comment="Argon2; null until an invitation is accepted")
    active: Mapped[bool] = mapped_column(server_default=text("true"))
    created_at: Mapped[datetime] = _now()


ROLES = ("admin", "editor", "viewer", "approver")


class Membership(Base):
    """A user in one organization, with one or more roles; deactivated per organization. It counts
    for logins once the account's password was proven for it (`accepted_at`, see people.py)."""

    __tablename__ = "memberships"
    __table_args__ = (
        CheckConstraint(
            "cardinality(roles) > 0 AND roles <@ ARRAY['admin','editor','viewer','approver']::text[]", name="roles"
        ),
        Index("ix_memberships_org_id_created_at_user_id", "org_id", "created_at", "user_id"),
    )

    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    roles: Mapped[list[str]]
    active: Mapped[bool] = mapped_column(server_default=text("true"))
    created_at: Mapped[datetime] = _now()
    deactivated_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None] = mapped_column(
        comment="when the password was proven for this membership; null while it waits for its invitation"
    )


class Invitation(Base):
    __tablename__ = "invitations"
    __table_args__ = (
        Index(
            "ix_invitations_pending",
            "org_id",
            "created_at",
            "id",
            postgresql_where=text("accepted_at IS NULL AND revoked_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    email: Mapped[str]
    name: Mapped[str] = mapped_column(server_default="")
    roles: Mapped[list[str]]
    token_hash: Mapped[str] = mapped_column(unique=True)
    invited_by: Mapped[str] = mapped_column(comment="actor label")
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id"),
        comment="set on the invitation of a membership an operator made: the one that may set a first password",
    )
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Session(Base):
    """A human's login to one organization: a bearer token (or the dashboard's cookie)."""

    __tablename__ = "sessions"
    __table_args__ = (ForeignKeyConstraint(["org_id", "user_id"], ["memberships.org_id", "memberships.user_id"]),)

    id: Mapped[str] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(unique=True)
    csrf_token: Mapped[str]
    user_id: Mapped[str] = mapped_column(index=True)
    org_id: Mapped[str]
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class ApiKey(Base):
    """A program's or an external agent's credential: one role, optionally one project."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("role IN ('admin','editor','viewer','approver')", name="role"),)

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str]
    role: Mapped[str]
    agent: Mapped[bool] = mapped_column(server_default=text("false"), comment="an external agent's key")
    key_hash: Mapped[str] = mapped_column(unique=True)
    prefix: Mapped[str]
    issued_by: Mapped[str] = mapped_column(comment="actor label")
    issued_by_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class Workflow(Base):
    __tablename__ = "workflows"

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str]
    description: Mapped[str] = mapped_column(server_default="")
    status: Mapped[str] = mapped_column(comment="draft | active | inactive | archived | quarantined")
    active_version: Mapped[int | None] = mapped_column(Integer)
    quarantine_reason: Mapped[str | None] = mapped_column(
        comment="why the workers refused the active version; set with status = 'quarantined'"
    )
    latest_version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(
        server_default="workflow",
        comment="workflow | agent: an agent's backing workflow, changed only through /agents",
    )
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class WorkflowVersion(Base):
    """A definition. Editable while `draft`; frozen once proposed for activation or activated."""

    __tablename__ = "workflow_versions"

    workflow_id: Mapped[str] = mapped_column(ForeignKey("workflows.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[str] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(comment="draft | proposed | active | superseded")
    definition: Mapped[dict[str, Any]]
    authored_by: Mapped[str] = mapped_column(comment="actor id of the last author")
    authored_by_user_id: Mapped[str | None]
    created_at: Mapped[datetime] = _now()
    activated_at: Mapped[datetime | None]


class ChangeRequest(Base):
    """A change that a project's policy (or an agent key) says must be approved by another person."""

    __tablename__ = "change_requests"
    __table_args__ = (
        Index("uq_change_requests_open", "workflow_id", unique=True, postgresql_where=text("status = 'open'")),
        Index(
            "uq_change_requests_open_template",
            "agent_template_id",
            unique=True,
            postgresql_where=text("status = 'open' AND kind = 'agent_template.activate'"),
        ),
        # The list's filters, each in its newest-first order (the project's also finds a project's history).
        Index("ix_change_requests_org_id_created_at", "org_id", "created_at"),
        Index("ix_change_requests_org_id_status_created_at", "org_id", "status", "created_at"),
        Index("ix_change_requests_workflow_id_created_at", "workflow_id", "created_at"),
        Index("ix_change_requests_project_id_created_at", "project_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    workflow_id: Mapped[str | None] = mapped_column(
        ForeignKey("workflows.id"), comment="workflow.activate, agent.upgrade (the agent's backing workflow)"
    )
    agent_template_id: Mapped[str | None] = mapped_column(
        ForeignKey("agent_templates.id"), comment="agent_template.activate, agent.upgrade"
    )
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id"), comment="agent.upgrade")
    template_version: Mapped[int | None] = mapped_column(Integer, comment="agent.upgrade: the version it moves to")
    kind: Mapped[str] = mapped_column(comment="workflow.activate | agent_template.activate | agent.upgrade")
    version: Mapped[int] = mapped_column(
        Integer, comment="the workflow version to activate, or for agent_template.activate the template version"
    )
    base_version: Mapped[int | None] = mapped_column(Integer, comment="the version active when requested")
    diff: Mapped[list[Any]]
    reason: Mapped[str] = mapped_column(server_default="")
    status: Mapped[str] = mapped_column(comment="open | approved | rejected | cancelled")
    requested_by: Mapped[dict[str, Any]] = mapped_column(comment="actor")
    decided_by: Mapped[dict[str, Any] | None]
    decision_comment: Mapped[str | None]
    created_at: Mapped[datetime] = _now()
    decided_at: Mapped[datetime | None]


class AgentTemplate(Base):
    """A reusable agent definition in a project (processors/agent_templates.py), versioned like a
    workflow; an agent is deployed from one of its active (or superseded) versions."""

    __tablename__ = "agent_templates"
    __table_args__ = (Index("ix_agent_templates_org_id_created_at", "org_id", "created_at"),)

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str]
    copied_from: Mapped[str | None] = mapped_column(comment="builtin:<key> or the id of the template copied")
    status: Mapped[str] = mapped_column(comment="draft | active | archived")
    active_version: Mapped[int | None] = mapped_column(Integer)
    latest_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class AgentTemplateVersion(Base):
    """A template definition. Editable while `draft`; frozen once proposed or activated."""

    __tablename__ = "agent_template_versions"

    template_id: Mapped[str] = mapped_column(ForeignKey("agent_templates.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[str] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(comment="draft | proposed | active | superseded | archived")
    definition: Mapped[dict[str, Any]]
    authored_by: Mapped[str] = mapped_column(comment="actor id of the last author")
    authored_by_user_id: Mapped[str | None]
    summary_credential: Mapped[str | None] = mapped_column(
        comment="the summary provider's credential, sealed with DRIPPULSE_SECRET_KEY"
    )
    created_at: Mapped[datetime] = _now()
    activated_at: Mapped[datetime | None]


class Agent(Base):
    """A deployed agent: one template version running as its backing workflow (`workflow_id`, kind
    'agent'), whose version `workflow_version` holds that template version's policy. Paused: the
    backing workflow is inactive and invocations are refused."""

    __tablename__ = "agents"
    __table_args__ = (Index("ix_agents_org_id_created_at", "org_id", "created_at"),)

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str]
    template_id: Mapped[str] = mapped_column(ForeignKey("agent_templates.id"), index=True)
    template_version: Mapped[int] = mapped_column(Integer)
    workflow_id: Mapped[str] = mapped_column(ForeignKey("workflows.id"), unique=True)
    workflow_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(comment="active | paused | archived")
    paused_reason: Mapped[str | None] = mapped_column(comment="paused_by_person | over_budget | template_archived")
    paused_detail: Mapped[str | None]
    connection_ids: Mapped[list[str]] = mapped_column(server_default=text("'{}'"))
    webhook_ids: Mapped[list[str]] = mapped_column(server_default=text("'{}'"))
    created_by: Mapped[dict[str, Any]] = mapped_column(comment="actor")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Approval(Base):
    """An approval step reached by one execution. The orchestrator opens it (the qualifier only
    names it) and the decision is taken here, exactly once: a conditional update from `pending`,
    so of two deciders, or a decider and the timeout, one wins and the other gets a conflict. The
    orchestrator that holds the paused execution (by `inbox` and `partition`) resumes it and sets
    `resumed_at`."""

    __tablename__ = "approvals"
    __table_args__ = (
        Index("ix_approvals_org_id_status_requested_at", "org_id", "status", "requested_at"),
        # The list's other filters, each in its newest-first order (the project's also finds a
        # project's history); `assignee` is an overlap (&&) with the approvers array: GIN.
        Index("ix_approvals_org_id_requested_at", "org_id", "requested_at"),
        Index("ix_approvals_workflow_id_requested_at", "workflow_id", "requested_at"),
        Index("ix_approvals_project_id_requested_at", "project_id", "requested_at"),
        Index("ix_approvals_approvers", "approvers", postgresql_using="gin"),
        Index(
            "ix_approvals_undelivered",
            "inbox",
            "partition",
            "decided_at",
            postgresql_where=text("status <> 'pending' AND resumed_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    workflow_id: Mapped[str] = mapped_column(ForeignKey("workflows.id"))
    workflow_version: Mapped[int] = mapped_column(Integer)
    execution_id: Mapped[str]
    """An execution with several approval steps has an approval per step (the id derives from both)."""
    step: Mapped[str] = mapped_column(comment="the approval step's path in the definition")
    lead_id: Mapped[str]
    lead: Mapped[dict[str, Any]] = mapped_column(comment="the lead as the execution saw it")
    explanation: Mapped[dict[str, Any]] = mapped_column(
        comment="score, score_breakdown, tier, owner, routing_reason, decisions so far"
    )
    approvers: Mapped[list[str]] = mapped_column(comment="emails, or role:<role>")
    status: Mapped[str] = mapped_column(comment="pending | approved | rejected | timed_out | cancelled")
    requested_at: Mapped[datetime]
    due_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[dict[str, Any] | None] = mapped_column(comment="actor; null for a timeout or an exit")
    comment: Mapped[str | None]
    inbox: Mapped[str | None] = mapped_column(
        comment="the orchestrator inbox topic whose partition this is; null: written before inboxes were named"
    )
    partition: Mapped[int] = mapped_column(Integer, comment="the orchestrator inbox partition holding the execution")
    resumed_at: Mapped[datetime | None]


class ScheduleFire(Base):
    """One fire time of a scheduled workflow, claimed by the one orchestrator that runs it."""

    __tablename__ = "schedule_fires"

    workflow_id: Mapped[str] = mapped_column(ForeignKey("workflows.id"), primary_key=True)
    fire_at: Mapped[datetime] = mapped_column(primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    workflow_version: Mapped[int] = mapped_column(Integer)
    claimed_by: Mapped[str] = mapped_column(comment="the orchestrator process that claimed it")
    claimed_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    leads: Mapped[int | None] = mapped_column(Integer, comment="leads of the segment it ran for")


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    url: Mapped[str]
    event_types: Mapped[list[str]]
    description: Mapped[str] = mapped_column(server_default="")
    enabled: Mapped[bool] = mapped_column(server_default=text("true"))
    disabled_reason: Mapped[str | None]
    secrets: Mapped[list[Any]] = mapped_column(comment="sealed signing secrets with their validity")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class InboundSource(Base):
    __tablename__ = "inbound_sources"

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str]
    event_type: Mapped[str]
    mapping: Mapped[dict[str, Any]]
    secrets: Mapped[list[Any]] = mapped_column(comment="sealed verification secrets with their validity")
    agent_id: Mapped[str | None] = mapped_column(
        ForeignKey("agents.id"), comment="the agent its events call; null: the org's workflows"
    )
    created_at: Mapped[datetime] = _now()


class IntegrationConnection(Base):
    __tablename__ = "integration_connections"

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    type: Mapped[str]
    name: Mapped[str]
    base_url: Mapped[str]
    sealed_credentials: Mapped[str | None]
    rate_limit_per_s: Mapped[float] = mapped_column(Float)
    burst: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(server_default=text("true"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


AUDIT_FILTERS = ("action", "resource_type", "resource_id", "actor_id", "project_id")
"""The audit log's exact-match filters (`GET /audit_log`), each with its index."""


class AuditEntry(Base):
    """Append-only: the application has no update or delete path, and a trigger refuses both."""

    __tablename__ = "audit_log"
    __table_args__ = (
        # The log is read newest first by (at, id): one index for all of it and one per filter, each
        # also serving `since`/`until` as a range of `at`.
        Index("ix_audit_log_org_id_at_id", "org_id", "at", "id"),
        *(Index(f"ix_audit_log_org_id_{column}_at_id", "org_id", column, "at", "id") for column in AUDIT_FILTERS),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    at: Mapped[datetime] = _now()
    actor_type: Mapped[str] = mapped_column(comment="user | api_key | system")
    actor_id: Mapped[str]
    actor_label: Mapped[str]
    action: Mapped[str]
    resource_type: Mapped[str]
    resource_id: Mapped[str]
    project_id: Mapped[str | None]
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    request_id: Mapped[str | None]


class LeadModelVersion(Base):
    """One checkpoint of an organization's learned lead score (processors/learned_model.py), written
    by the trainer (`drippulse worker trainer`) in the transaction that also records the input
    offsets it covers (`model_trainer_offsets`): a restarted trainer resumes this very model from
    exactly the events after it. Versions count up per org; older ones are pruned."""

    __tablename__ = "lead_models"

    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = _now()
    trained_on: Mapped[int] = mapped_column(BigInteger, comment="outcomes learned from, over all versions")
    weights: Mapped[dict[str, Any]] = mapped_column(comment="bias and weight per feature bucket: what scoring reads")
    state: Mapped[dict[str, Any]] = mapped_column(comment="the learner's sums, feature names, the recent evaluations")
    metrics: Mapped[dict[str, Any]] = mapped_column(comment="progressive (predict, then learn) figures")


class ModelTrainerOffset(Base):
    """Where the trainer's consumer group is in each input partition, as of its last checkpoint. The
    trainer seeks here when it is given a partition, so Kafka's own committed offsets are not used."""

    __tablename__ = "model_trainer_offsets"

    consumer_group: Mapped[str] = mapped_column(primary_key=True)
    topic: Mapped[str] = mapped_column(primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = _now()


class OrgUnitPrices(Base):
    """An organization's unit prices (processors/costs.py): what its executions cost. No row: the
    defaults. Kept as the prices' JSON, so a unit added later needs no migration (absent: its default)."""

    __tablename__ = "org_unit_prices"

    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    prices: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime] = _now()
