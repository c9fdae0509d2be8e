"""The workflow definition: a trigger, then an ordered list of typed steps.

These models are the single validation point for definitions arriving through the API; a validation
error carries the JSON path of the offending field (pydantic's `loc`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from processors.events import EventType


class Operator(StrEnum):
    EQ = "eq"
    NEQ = "neq"
    IN = "in"
    NOT_IN = "not_in"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    CONTAINS = "contains"
    NOT_CONTAINS = "not_contains"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"


_UNARY = {Operator.EXISTS, Operator.NOT_EXISTS}
_LIST_VALUED = {Operator.IN, Operator.NOT_IN}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldCondition(_Strict):
    """`field` is a dotted path into the event (`lead.country`, `lead.attributes.plan`) or a value an
    earlier step computed (`score`, `tier`)."""

    field: str = Field(min_length=1)
    op: Operator
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_operator(self) -> FieldCondition:
        if self.op in _UNARY:
            if self.value is not None:
                raise ValueError(f"operator {self.op.value!r} takes no value")
        elif self.op in _LIST_VALUED:
            if not isinstance(self.value, list):
                raise ValueError(f"operator {self.op.value!r} needs a list value")
        elif self.value is None or isinstance(self.value, list | dict):
            raise ValueError(f"operator {self.op.value!r} needs a scalar value")
        return self


class AllOf(_Strict):
    all: list[Condition] = Field(min_length=1)


class AnyOf(_Strict):
    any: list[Condition] = Field(min_length=1)


def _condition_kind(value: Any) -> str:
    if isinstance(value, dict):
        if "all" in value:
            return "all"
        if "any" in value:
            return "any"
    elif isinstance(value, AllOf | AnyOf | FieldCondition):
        return {AllOf: "all", AnyOf: "any", FieldCondition: "field"}[type(value)]
    return "field"


Condition = Annotated[
    Annotated[FieldCondition, Tag("field")] | Annotated[AllOf, Tag("all")] | Annotated[AnyOf, Tag("any")],
    Discriminator(_condition_kind),
]
AllOf.model_rebuild()
AnyOf.model_rebuild()


class Trigger(_Strict):
    """Enrollment criteria: which events start this workflow, optionally narrowed by a condition."""

    event_types: list[EventType] = Field(min_length=1)
    condition: Condition | None = None


class FilterStep(_Strict):
    """Stop the workflow unless the condition holds; the execution is recorded as `filtered_out`."""

    type: Literal["filter"]
    condition: Condition


class ScoreRule(_Strict):
    id: str = Field(min_length=1)
    when: Condition
    points: int


class ScoreStep(_Strict):
    """Add the points of every rule whose condition holds."""

    type: Literal["score"]
    rules: list[ScoreRule] = Field(min_length=1)

    @model_validator(mode="after")
    def _rule_ids_unique(self) -> ScoreStep:
        ids = [rule.id for rule in self.rules]
        if len(ids) != len(set(ids)):
            raise ValueError("score rule ids must be unique")
        return self


class TierThreshold(_Strict):
    tier: str = Field(min_length=1)
    min_score: int


class TierStep(_Strict):
    """Name the first tier whose `min_score` the score reaches, checked from the highest threshold."""

    type: Literal["tier"]
    thresholds: list[TierThreshold] = Field(min_length=1)
    default_tier: str = Field(min_length=1)


class RouteRule(_Strict):
    """A territory rule: when it matches, assign `owner`, or rotate over `team`."""

    id: str = Field(min_length=1)
    when: Condition
    owner: str | None = None
    team: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_assignee(self) -> RouteRule:
        if (self.owner is None) == (self.team is None):
            raise ValueError("a route rule needs exactly one of 'owner' or 'team'")
        return self


class RouteStep(_Strict):
    """Assign an owner: the first matching rule wins; else round-robin over `team`; else the fallback."""

    type: Literal["route"]
    rules: list[RouteRule] = Field(default_factory=list)
    team: list[str] = Field(default_factory=list)
    fallback_owner: str = Field(min_length=1)


class CrmUpdateAction(_Strict):
    """Write score, tier and owner (plus any static properties) to the lead in the CRM."""

    type: Literal["action"]
    action: Literal["crm_update"]
    properties: dict[str, str] = Field(default_factory=dict)


class WebhookNotifyAction(_Strict):
    """Notify the organization's webhook subscribers."""

    type: Literal["action"]
    action: Literal["webhook_notify"]
    event_type: str = Field(default="lead.qualified", min_length=1)


ActionStep = Annotated[
    Annotated[CrmUpdateAction, Tag("crm_update")] | Annotated[WebhookNotifyAction, Tag("webhook_notify")],
    Discriminator(lambda v: v.get("action") if isinstance(v, dict) else getattr(v, "action", None)),
]


def _step_kind(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return str(kind) if kind is not None else None


Step = Annotated[
    Annotated[FilterStep, Tag("filter")]
    | Annotated[ScoreStep, Tag("score")]
    | Annotated[TierStep, Tag("tier")]
    | Annotated[RouteStep, Tag("route")]
    | Annotated[ActionStep, Tag("action")],
    Discriminator(_step_kind),
]


class WorkflowDefinition(_Strict):
    trigger: Trigger
    steps: list[Step] = Field(min_length=1)
