"""An agent template: a reusable policy with the limits a person set on what it may do.

The policy is a workflow in the workflow language, evaluated by the same compiled engine, so an agent
decides exactly as a workflow would; the template adds what makes it an agent: the input it accepts
(a JSON Schema), the scoring it relies on, the actions it may take and which of them a person must
approve first, where its summaries come from, and a budget. The rules below are checked when a
definition is offered, so a template can never hold an action it was not allowed, or an action that
needs approval on a path no person approves.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

from jsonschema import Draft202012Validator, SchemaError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from processors.model import (
    AddTagAction,
    AgentStep,
    ApprovalStep,
    BranchStep,
    Condition,
    CreateTaskAction,
    CrmUpdateAction,
    RouteStep,
    Step,
    Trigger,
    WebhookNotifyAction,
    WorkflowDefinition,
    all_steps,
    reads_model,
)
from processors.summaries import SummaryProvider

AgentAction = Literal["crm_update", "webhook_notify", "route", "create_task"]
"""What an agent may do to the world. `add_tag` writes to the CRM and counts as `crm_update`; `log`
only annotates the execution and is always allowed."""

Scoring = Literal["rules", "learned", "both"]
"""`rules`: score rules and tiers on the lead's fields only; `learned`: the org's learned model
(`model.probability`) decides; `both`: rules and the model together."""


class Budget(BaseModel):
    """Over either limit, the agent pauses itself (visible reason, audit entry, `agent.paused`)."""

    model_config = ConfigDict(extra="forbid")

    executions_per_minute: int | None = Field(default=None, ge=1, le=1_000_000)
    cost_per_day: float | None = Field(default=None, gt=0, description="In the org's cost unit (its unit prices).")


class AgentPolicy(BaseModel):
    """A workflow without a required trigger: with none, the agent runs only when invoked."""

    model_config = ConfigDict(extra="forbid")

    trigger: Trigger | None = None
    steps: list[Step] = Field(min_length=1)
    exit_condition: Condition | None = None


class AgentTemplateDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    purpose: str = Field(default="", max_length=2000)
    input_schema: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object"},
        description="JSON Schema (2020-12) of the `lead` an invocation carries; checked on every call.",
    )
    policy: AgentPolicy
    scoring: Scoring = "rules"
    actions: list[AgentAction] = Field(default_factory=list, description="What it may do; empty: decide only.")
    approval_required: list[AgentAction] = Field(
        default_factory=list, description="Actions that run only after a person approved them."
    )
    summary: SummaryProvider = Field(default_factory=SummaryProvider)
    budget: Budget = Field(default_factory=Budget)

    @field_validator("input_schema")
    @classmethod
    def _a_json_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ValueError(f"not a JSON Schema: {exc.message}") from exc
        return schema

    @model_validator(mode="after")
    def _acts_within_its_limits(self) -> AgentTemplateDefinition:
        extra = sorted(set(self.approval_required) - set(self.actions))
        if extra:
            raise ValueError(f"approval_required names actions the template may not take: {extra}")
        workflow = self.workflow()
        if any(isinstance(step, AgentStep) for step in all_steps(workflow.steps)):
            raise ValueError(
                "an agent's policy cannot call an agent: agents are called by workflows, inbound sources and "
                "the API, so no chain of calls can loop"
            )
        for action, approved in _actions(workflow.steps, approved=False):
            if action not in self.actions:
                raise ValueError(f"the policy takes '{action}', which 'actions' does not allow")
            if action in self.approval_required and not approved:
                raise ValueError(
                    f"the policy takes '{action}' on a path no person approves; it needs an approval step "
                    "before it (one whose timeout does not approve)"
                )
        model = reads_model(workflow)
        if self.scoring == "rules" and model:
            raise ValueError("scoring 'rules' reads no model.* field; use 'learned' or 'both'")
        if self.scoring != "rules" and not model:
            raise ValueError(f"scoring '{self.scoring}' needs a step that reads model.probability")
        return self

    def workflow(self) -> WorkflowDefinition:
        """The workflow a deployed agent runs: the policy, invoked only when it names no trigger."""
        trigger = self.policy.trigger or Trigger(invoked_only=True)
        return WorkflowDefinition(trigger=trigger, steps=self.policy.steps, exit_condition=self.policy.exit_condition)


def _actions(steps: Sequence[Step], approved: bool) -> Iterator[tuple[AgentAction, bool]]:
    """Every action the steps can take, and whether a person approved it on that path: after an
    approval in the same sequence, unless the approval's timeout approves in the person's stead."""
    for step in steps:
        if isinstance(step, CrmUpdateAction | AddTagAction):
            yield "crm_update", approved
        elif isinstance(step, WebhookNotifyAction):
            yield "webhook_notify", approved
        elif isinstance(step, CreateTaskAction):
            yield "create_task", approved
        elif isinstance(step, RouteStep):
            yield "route", approved
        elif isinstance(step, BranchStep):
            for arm in step.arms:
                yield from _actions(arm.steps, approved)
            yield from _actions(step.otherwise, approved)
        elif isinstance(step, ApprovalStep):
            yield from _actions(step.on_reject, approved)
            yield from _actions(step.timeout_branch, approved)
            approved = approved or step.on_timeout != "approve"
