"""The workflow definition: a trigger, then an ordered list of typed steps.

These models are the single validation point for definitions arriving through the API; a validation
error carries the JSON path of the offending field (pydantic's `loc`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal

import re2
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from processors.events import EventType
from processors.free_mail import FREE_MAIL
from processors.schedules import MIN_INTERVAL_S, check_cron, check_frequency, check_timezone


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
    BETWEEN = "between"
    REGEX = "regex"
    IS_EMAIL_DOMAIN = "is_email_domain"
    CHANGED = "changed"
    CHANGED_TO = "changed_to"
    CHANGED_FROM = "changed_from"


_UNARY = {Operator.EXISTS, Operator.NOT_EXISTS, Operator.CHANGED}
_LIST_VALUED = {Operator.IN, Operator.NOT_IN}
MAX_REGEX_LENGTH = 500


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
        if self.op is Operator.BETWEEN:
            _check_range(self.value)
        elif self.op is Operator.REGEX:
            compile_regex(self.value)
        elif self.op is Operator.IS_EMAIL_DOMAIN:
            if self.value != FREE_MAIL and not (
                isinstance(self.value, list) and self.value and all(isinstance(d, str) for d in self.value)
            ):
                raise ValueError(f"'is_email_domain' takes {FREE_MAIL!r} or a non-empty list of domains")
        elif self.op in _UNARY:
            if self.value is not None:
                raise ValueError(f"operator {self.op.value!r} takes no value")
        elif self.op in _LIST_VALUED:
            if not isinstance(self.value, list):
                raise ValueError(f"operator {self.op.value!r} needs a list value")
        elif self.value is None or isinstance(self.value, list | dict):
            raise ValueError(f"operator {self.op.value!r} needs a scalar value")
        return self


def _check_range(value: Any) -> None:
    if not (isinstance(value, list) and len(value) == 2):
        raise ValueError("'between' takes [low, high]")
    low, high = value
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    if not (numbers or all(isinstance(v, str) for v in value)) or low > high:
        raise ValueError("'between' takes [low, high] of two numbers or two strings with low <= high")


def compile_regex(pattern: Any) -> Any:
    """RE2: matching time is linear in the input, so no pattern can backtrack catastrophically; the
    features that would need backtracking (backreferences, lookaround) are refused here."""
    if not isinstance(pattern, str) or not 0 < len(pattern) <= MAX_REGEX_LENGTH:
        raise ValueError(f"'regex' takes a pattern of 1 to {MAX_REGEX_LENGTH} characters")
    options = re2.Options()
    options.log_errors = False
    options.max_mem = 1 << 20
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"invalid regex for RE2: {reason}") from None


class AllOf(_Strict):
    all: list[Condition] = Field(min_length=1)


class AnyOf(_Strict):
    any: list[Condition] = Field(min_length=1)


class NotOf(_Strict):
    not_: Condition = Field(alias="not")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)


_GROUP_KINDS = {"all": "all", "any": "any", "not": "not"}


def _condition_kind(value: Any) -> str:
    if isinstance(value, dict):
        return next((kind for key, kind in _GROUP_KINDS.items() if key in value), "field")
    kinds: dict[type, str] = {AllOf: "all", AnyOf: "any", NotOf: "not"}
    return kinds.get(type(value), "field")


Condition = Annotated[
    Annotated[FieldCondition, Tag("field")]
    | Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[NotOf, Tag("not")],
    Discriminator(_condition_kind),
]
AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()


def leaves(cond: Condition) -> Iterator[FieldCondition]:
    """Every field condition in a condition tree."""
    if isinstance(cond, FieldCondition):
        yield cond
    elif isinstance(cond, AllOf | AnyOf):
        for part in cond.all if isinstance(cond, AllOf) else cond.any:
            yield from leaves(part)
    elif isinstance(cond, NotOf):
        yield from leaves(cond.not_)


MODEL_FIELDS = ("model.probability", "model.version", "model.trained_on")
"""What a step's condition may read of the org's learned model (docs/models.md): the probability that
the lead converts, and which model said so. Absent (null) while the org has no model."""


def model_fields(cond: Condition | None) -> list[str]:
    """The `model.*` fields a condition reads."""
    return [] if cond is None else [leaf.field for leaf in leaves(cond) if leaf.field.partition(".")[0] == "model"]


def _check_model_fields(where: str, cond: Condition | None, allowed: bool) -> None:
    for name in model_fields(cond):
        if not allowed:
            raise ValueError(
                f"{where} cannot read {name}: the learned model's probability is computed when a step runs"
            )
        if name not in MODEL_FIELDS:
            raise ValueError(f"{name}: the learned model offers {', '.join(MODEL_FIELDS)}")


class Reenrollment(_Strict):
    """HubSpot semantics: a lead is enrolled once; it enrolls again only when this is enabled, one of
    these triggers fires, and it is not still enrolled (an execution of it is pending)."""

    enabled: bool = False
    event_types: list[EventType] = Field(default_factory=list)
    condition: Condition | None = None

    @model_validator(mode="after")
    def _needs_a_trigger(self) -> Reenrollment:
        if self.enabled and not self.event_types:
            raise ValueError("re-enrollment needs at least one event type")
        return self


_SCHEDULE_FLOOR = "schedule_floor_s"


def offered(schedule_floor_s: int = MIN_INTERVAL_S) -> dict[str, int]:
    """The validation context of a definition offered to be stored, as opposed to one read back:
    the rules only new definitions meet (the schedule floor, the score bounds). A stored definition
    is read back without it, so a version stored before a rule existed still loads and its paused
    executions still resume."""
    return {_SCHEDULE_FLOOR: schedule_floor_s}


def _is_offered(info: ValidationInfo) -> bool:
    return _SCHEDULE_FLOOR in (info.context or {})


class Schedule(_Strict):
    """Run the workflow at each time `cron` names, in `timezone`, for every lead of the `segment`:
    leads DripPulse has seen (an event within the history window), narrowed by a condition on
    `lead.*` (its latest values), `tier` (the tier last recorded for it) and `days_inactive` (days
    since its last event), e.g. tier B leads not updated for 30 days. Cron: five fields (minute hour
    day month weekday), or six with seconds last; a new schedule fires at most once every 5 minutes."""

    cron: Annotated[str, AfterValidator(check_cron)]
    timezone: Annotated[str, AfterValidator(check_timezone)] = "UTC"
    segment: Condition | None = None

    @field_validator("cron")
    @classmethod
    def _at_most_once_per_floor(cls, cron: str, info: ValidationInfo) -> str:
        floor_s = (info.context or {}).get(_SCHEDULE_FLOOR)
        return cron if floor_s is None else check_frequency(cron, floor_s)


class Trigger(_Strict):
    """Enrollment criteria: which events start this workflow, optionally narrowed by a condition;
    and/or a schedule. A lead enrolls once, unless re-enrollment says otherwise."""

    event_types: list[EventType] = Field(default_factory=list)
    condition: Condition | None = None
    reenrollment: Reenrollment = Field(default_factory=Reenrollment)
    schedule: Schedule | None = None
    invoked_only: bool = Field(
        default=False,
        description="No event and no schedule starts it: it runs only when asked (a manual run, an agent call).",
    )

    @model_validator(mode="after")
    def _reenrollment_within_trigger(self) -> Trigger:
        if self.invoked_only and (self.event_types or self.schedule is not None):
            raise ValueError("an 'invoked_only' trigger names no event types and no schedule")
        if not self.event_types and self.schedule is None and not self.invoked_only:
            raise ValueError("a trigger needs event types, a schedule, or both (or 'invoked_only': true)")
        extra = set(self.reenrollment.event_types) - set(self.event_types)
        if extra:
            raise ValueError(f"re-enrollment event types must also be trigger event types: {sorted(extra)}")
        return self


class FilterStep(_Strict):
    """Stop the workflow unless the condition holds; the execution is recorded as `filtered_out`."""

    type: Literal["filter"]
    condition: Condition


MAX_POINTS = 1_000_000
"""A score rule's points, either way."""
MAX_SCORE = 1_000_000_000
"""A score's bound, either way, and of every bound on it: a score is an Avro `int` and a ClickHouse
`Int32` (±2,147,483,647), so it must never leave that range, whatever rules match. The points of
every score rule of a workflow, added up without sign, stay within it too (`WorkflowDefinition`).
These bounds are met by definitions offered to be stored (`offered`): points had none before, so a
stored version may exceed them, still loads, and has its score clamped to Int32 where it is
computed (`processors.compiler`)."""


def _within(bound: int) -> AfterValidator:
    """`-bound <= value <= bound`, for an offered definition."""

    def check(value: int, info: ValidationInfo) -> int:
        if _is_offered(info) and not -bound <= value <= bound:
            raise ValueError(f"must be between {-bound:,} and {bound:,}")
        return value

    return AfterValidator(check)


def _range(bound: int) -> Any:
    """The bound as the published JSON schema states it (what a new definition must meet)."""
    return Field(json_schema_extra={"minimum": -bound, "maximum": bound})


Points = Annotated[int, _within(MAX_POINTS), _range(MAX_POINTS)]
Score = Annotated[int, _within(MAX_SCORE), _range(MAX_SCORE)]


class ScoreRule(_Strict):
    id: str = Field(min_length=1)
    when: Condition
    points: Points


class ScoreStep(_Strict):
    """Add the points (negative allowed) of every rule whose condition holds, then clamp the total to
    [floor, ceiling] when given."""

    type: Literal["score"]
    rules: list[ScoreRule] = Field(min_length=1)
    floor: Score | None = None
    ceiling: Score | None = None

    @model_validator(mode="after")
    def _rules_and_bounds(self) -> ScoreStep:
        ids = [rule.id for rule in self.rules]
        if len(ids) != len(set(ids)):
            raise ValueError("score rule ids must be unique")
        if self.floor is not None and self.ceiling is not None and self.floor > self.ceiling:
            raise ValueError("floor must not exceed ceiling")
        return self


class TierThreshold(_Strict):
    """Reached when the score is at least `min_score` and the learned model's probability that the
    lead converts at least `min_probability`, for each one given (an org without a model yet reaches
    no `min_probability`)."""

    tier: str = Field(min_length=1)
    min_score: Score | None = None
    min_probability: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _a_minimum(self) -> TierThreshold:
        if self.min_score is None and self.min_probability is None:
            raise ValueError("a tier threshold needs min_score, min_probability or both")
        return self


class TierStep(_Strict):
    """Name the first tier whose minimums the lead reaches, checked from the highest threshold."""

    type: Literal["tier"]
    thresholds: list[TierThreshold] = Field(min_length=1)
    default_tier: str = Field(min_length=1)

    @model_validator(mode="after")
    def _unambiguous(self) -> TierStep:
        kinds = {(t.min_score is None, t.min_probability is None) for t in self.thresholds}
        if len(kinds) > 1:
            raise ValueError("every threshold of a tier step names the same minimums (min_score, min_probability)")
        minimums = [(t.min_score, t.min_probability) for t in self.thresholds]
        if len(minimums) != len(set(minimums)):
            raise ValueError("tier thresholds need distinct minimums")
        return self

    @property
    def reads_model(self) -> bool:
        return self.thresholds[0].min_probability is not None


class TeamMember(_Strict):
    """An owner in a rotation. `weight` 2 gets twice the leads of weight 1; an `away` owner is
    skipped; `daily_cap` bounds the leads assigned to this owner per UTC day across the org."""

    owner: str = Field(min_length=1)
    weight: int = Field(default=1, ge=1, le=100)
    away: bool = False
    daily_cap: int | None = Field(default=None, ge=1)


def _members(value: Any) -> Any:
    """A plain owner name is shorthand for a member with default settings."""
    if isinstance(value, list):
        return [{"owner": v} if isinstance(v, str) else v for v in value]
    return value


Team = Annotated[list[TeamMember], BeforeValidator(_members)]


class RouteRule(_Strict):
    """A territory rule: when it matches, assign `owner`, or rotate over `team`."""

    id: str = Field(min_length=1)
    when: Condition
    owner: str | None = None
    team: Team | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_assignee(self) -> RouteRule:
        if (self.owner is None) == (self.team is None):
            raise ValueError("a route rule needs exactly one of 'owner' or 'team'")
        return self


class RouteStep(_Strict):
    """Assign an owner. With `account_match`, a lead whose business email domain already has an
    owner goes to that owner. Else the first matching territory rule wins; else weighted round-robin
    over `team`. When nobody is eligible (away, at daily cap), the `fallback_owner` queue gets it."""

    type: Literal["route"]
    account_match: bool = False
    rules: list[RouteRule] = Field(default_factory=list)
    team: Team = Field(default_factory=list)
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


class AddTagAction(_Strict):
    """Tag the lead in the CRM."""

    type: Literal["action"]
    action: Literal["add_tag"]
    tag: str = Field(min_length=1, max_length=100)


class CreateTaskAction(_Strict):
    """Create a CRM task for the lead's owner (or a named assignee), due after `due_in_days`."""

    type: Literal["action"]
    action: Literal["create_task"]
    title: str = Field(min_length=1, max_length=300)
    due_in_days: int = Field(default=1, ge=0, le=365)
    assignee: str | None = None


class LogAction(_Strict):
    """Record a message on the execution, for operators reading it later."""

    type: Literal["action"]
    action: Literal["log"]
    message: str = Field(min_length=1, max_length=1000)


ActionStep = Annotated[
    Annotated[CrmUpdateAction, Tag("crm_update")]
    | Annotated[WebhookNotifyAction, Tag("webhook_notify")]
    | Annotated[AddTagAction, Tag("add_tag")]
    | Annotated[CreateTaskAction, Tag("create_task")]
    | Annotated[LogAction, Tag("log")],
    Discriminator(lambda v: v.get("action") if isinstance(v, dict) else getattr(v, "action", None)),
]


APPROVER_ROLES = ("admin", "approver", "editor")
"""Roles an approval step may name (`role:approver`); Viewers read and never decide."""


def _check_approver(approver: str) -> str:
    """An email is stored lower-case: a decider is named by their login, which is lower-case."""
    if approver.startswith("role:"):
        if approver.removeprefix("role:") not in APPROVER_ROLES:
            raise ValueError(
                f"approver {approver!r}: a role approver is one of "
                + ", ".join(f"role:{role}" for role in APPROVER_ROLES)
            )
        return approver
    if "@" not in approver:
        raise ValueError(f"approver {approver!r}: name a person by email or a role as role:<role>")
    return approver.lower()


class ApprovalStep(_Strict):
    """Stop until a person decides. On approve the rest of the workflow runs; on reject the
    `on_reject` steps run and the execution ends `rejected`. Deciders are the listed people (by
    email) and members holding a listed role (`role:approver`). When nobody decides within
    `timeout_hours`, `on_timeout` decides: approve, reject, or `branch`, which runs `timeout_branch`
    instead of the rest of the workflow."""

    type: Literal["approval"]
    approvers: list[Annotated[str, AfterValidator(_check_approver)]] = Field(
        default_factory=lambda: ["role:approver"], min_length=1
    )
    timeout_hours: float = Field(default=72, gt=0, le=24 * 90)
    on_timeout: Literal["approve", "reject", "branch"] = "reject"
    timeout_branch: list[Step] = Field(default_factory=list)
    on_reject: list[Step] = Field(default_factory=list)

    @model_validator(mode="after")
    def _branch_when_named(self) -> ApprovalStep:
        if (self.on_timeout == "branch") != bool(self.timeout_branch):
            raise ValueError("'timeout_branch' holds the steps of on_timeout 'branch', and only then")
        for name, steps in (("on_reject", self.on_reject), ("timeout_branch", self.timeout_branch)):
            if any(True for _ in pauses(steps)):
                raise ValueError(f"'{name}' steps cannot pause: they end the execution")
        return self


class WaitStep(_Strict):
    """Pause before the following steps run: for `hours`, `until` a moment, or until the date in a
    lead field (`until_field`, ISO 8601 or epoch milliseconds; shifted by `offset_hours`, so -24 is
    the day before). A lead whose field is empty or not a date does not wait. The lead leaves the
    wait early when the workflow's `exit_condition` matches a later event."""

    type: Literal["wait"]
    hours: float | None = Field(default=None, gt=0, le=24 * 365)
    until: AwareDatetime | None = None
    until_field: str | None = Field(default=None, min_length=1)
    offset_hours: float = Field(default=0, ge=-24 * 365, le=24 * 365)

    @model_validator(mode="after")
    def _one_deadline(self) -> WaitStep:
        given = [name for name in ("hours", "until", "until_field") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("a wait step needs exactly one of 'hours', 'until' or 'until_field'")
        if self.offset_hours and self.until_field is None:
            raise ValueError("'offset_hours' shifts 'until_field' and goes only with it")
        return self


AGENT_ID_PATTERN = r"^agt_[0-9a-f]{1,60}$"
"""A deployed agent's id as the control plane issues it."""


class AgentStep(_Strict):
    """Call a deployed agent of the workflow's project with the lead, as `POST /agents/{id}/execute`
    would, and go on at once: fire and forget. The agent's execution is its own, under its backing
    workflow; this execution records the call (`agent_call` in its actions). A call the agent would
    refuse (paused, or a lead its input schema refuses) is kept on the dead-letter topic instead,
    to replay. An event without a lead calls nothing."""

    type: Literal["agent"]
    agent_id: str = Field(pattern=AGENT_ID_PATTERN, description="A deployed agent of the workflow's project.")
    event_type: Literal["lead.created", "lead.updated"] = Field(
        default="lead.updated", description="The event type the agent's execution carries, as in execute."
    )


class BranchArm(_Strict):
    when: Condition
    steps: list[Step] = Field(min_length=1)


class BranchStep(_Strict):
    """If / else-if / else: the first arm whose condition holds runs its steps, else `otherwise`."""

    type: Literal["branch"]
    arms: list[BranchArm] = Field(min_length=1)
    otherwise: list[Step] = Field(default_factory=list)


def _step_kind(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return str(kind) if kind is not None else None


Step = Annotated[
    Annotated[FilterStep, Tag("filter")]
    | Annotated[ScoreStep, Tag("score")]
    | Annotated[TierStep, Tag("tier")]
    | Annotated[RouteStep, Tag("route")]
    | Annotated[ActionStep, Tag("action")]
    | Annotated[BranchStep, Tag("branch")]
    | Annotated[ApprovalStep, Tag("approval")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[AgentStep, Tag("agent")],
    Discriminator(_step_kind),
]
BranchArm.model_rebuild()
BranchStep.model_rebuild()
ApprovalStep.model_rebuild()


def pauses(steps: Sequence[Step], prefix: str = "") -> Iterator[tuple[str, ApprovalStep | WaitStep]]:
    """Every approval and wait step with its path, inside branches too, in step order."""
    for index, step in enumerate(steps):
        path = f"{prefix}{index}"
        if isinstance(step, ApprovalStep | WaitStep):
            yield path, step
        elif isinstance(step, BranchStep):
            for arm_index, arm in enumerate(step.arms):
                yield from pauses(arm.steps, f"{path}.{arm_index}.")
            yield from pauses(step.otherwise, f"{path}.else.")


def step_conditions(steps: Sequence[Step]) -> Iterator[Condition]:
    """Every condition a step reads, inside branches and approval fallbacks too."""
    for step in steps:
        if isinstance(step, FilterStep):
            yield step.condition
        elif isinstance(step, ScoreStep | RouteStep):
            yield from (rule.when for rule in step.rules)
        elif isinstance(step, BranchStep):
            for arm in step.arms:
                yield arm.when
                yield from step_conditions(arm.steps)
            yield from step_conditions(step.otherwise)
        elif isinstance(step, ApprovalStep):
            yield from step_conditions(step.on_reject)
            yield from step_conditions(step.timeout_branch)


def all_steps(steps: Sequence[Step]) -> Iterator[Step]:
    """Every step, inside branches and approval fallbacks too."""
    for step in steps:
        yield step
        if isinstance(step, BranchStep):
            for arm in step.arms:
                yield from all_steps(arm.steps)
            yield from all_steps(step.otherwise)
        elif isinstance(step, ApprovalStep):
            yield from all_steps(step.on_reject)
            yield from all_steps(step.timeout_branch)


def agent_steps(steps: Sequence[Step], prefix: str = "$.steps") -> Iterator[tuple[str, AgentStep]]:
    """Every agent step with the JSON path of its `agent_id`, inside branches and approval
    fallbacks too: what activation checks against the control plane."""
    for index, step in enumerate(steps):
        at = f"{prefix}[{index}]"
        if isinstance(step, AgentStep):
            yield f"{at}.agent_id", step
        elif isinstance(step, BranchStep):
            for arm_index, arm in enumerate(step.arms):
                yield from agent_steps(arm.steps, f"{at}.arms[{arm_index}].steps")
            yield from agent_steps(step.otherwise, f"{at}.otherwise")
        elif isinstance(step, ApprovalStep):
            yield from agent_steps(step.on_reject, f"{at}.on_reject")
            yield from agent_steps(step.timeout_branch, f"{at}.timeout_branch")


def reads_model(definition: WorkflowDefinition) -> bool:
    """Whether a step reads the learned model: only then does the qualifier compute its probability."""
    return any(model_fields(cond) for cond in step_conditions(definition.steps)) or any(
        isinstance(step, TierStep) and step.reads_model for step in all_steps(definition.steps)
    )


def _routes_after_a_pause(steps: Sequence[Step], paused: bool = False) -> tuple[bool, bool]:
    """(a route step runs after a pause, the steps can pause), walking in order."""
    found = False
    for step in steps:
        if isinstance(step, RouteStep) and paused:
            found = True
        elif isinstance(step, ApprovalStep | WaitStep):
            paused = True
        elif isinstance(step, BranchStep):
            arms = [arm.steps for arm in step.arms] + [step.otherwise]
            results = [_routes_after_a_pause(arm, paused) for arm in arms]
            found = found or any(route for route, _ in results)
            paused = any(pause for _, pause in results)
    return found, paused


class WorkflowDefinition(_Strict):
    """`exit_condition`: a later event of an enrolled lead that matches it takes the lead out of the
    workflow wherever it waits (an approval or a wait step), for example once it converted."""

    trigger: Trigger
    steps: list[Step] = Field(min_length=1)
    exit_condition: Condition | None = None

    @model_validator(mode="after")
    def _model_read_by_steps_only(self) -> WorkflowDefinition:
        trigger = self.trigger
        _check_model_fields("a trigger", trigger.condition, allowed=False)
        _check_model_fields("a re-enrollment trigger", trigger.reenrollment.condition, allowed=False)
        _check_model_fields("an exit condition", self.exit_condition, allowed=False)
        _check_model_fields("a schedule's segment", trigger.schedule.segment if trigger.schedule else None, False)
        for cond in step_conditions(self.steps):
            _check_model_fields("a step", cond, allowed=True)
        return self

    @model_validator(mode="after")
    def _routing_before_pauses(self) -> WorkflowDefinition:
        if _routes_after_a_pause(self.steps)[0]:
            raise ValueError(
                "route steps must come before any approval or wait step: routing state belongs to the "
                "worker that owns the lead's events, and a resumed execution runs elsewhere"
            )
        if self.exit_condition is not None and not any(True for _ in pauses(self.steps)):
            raise ValueError("'exit_condition' applies to leads waiting at an approval or wait step; there is none")
        return self

    @model_validator(mode="after")
    def _scores_stay_bounded(self, info: ValidationInfo) -> WorkflowDefinition:
        if not _is_offered(info):
            return self
        total = sum(
            abs(rule.points) for step in all_steps(self.steps) if isinstance(step, ScoreStep) for rule in step.rules
        )
        if total > MAX_SCORE:
            raise ValueError(
                f"the points of all score rules add up to {total:,} without sign; at most {MAX_SCORE:,}, so that "
                "a score always fits its 32-bit fields"
            )
        return self
