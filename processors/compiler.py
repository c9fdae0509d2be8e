"""Turns a validated workflow definition into a `CompiledWorkflow`: a tuple of step closures.

Compilation happens once per workflow version (the worker caches the result), so evaluating an
event is a walk over prepared closures, never a walk over the JSON definition. With `trace=True`
each step also records what it saw and decided, using the plain interpreter in `explain.py` for
conditions; the hot path pays one `is not None` check per step for that.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

from processors import ids
from processors.conditions import Predicate, compile_condition, compile_conditions, compile_getter, describe
from processors.events import lead_email, lead_id_of
from processors.execution import AgentCall, CrmCommandPlan, Execution, ExecutionStatus, Pause, WebhookNotification
from processors.explain import explain
from processors.free_mail import business_domain
from processors.lead_memory import watched_fields
from processors.model import (
    AddTagAction,
    AgentStep,
    ApprovalStep,
    BranchStep,
    Condition,
    CreateTaskAction,
    CrmUpdateAction,
    FilterStep,
    LogAction,
    RouteStep,
    ScoreStep,
    Step,
    TeamMember,
    TierStep,
    WaitStep,
    WebhookNotifyAction,
    WorkflowDefinition,
    agent_steps,
    pauses,
    reads_model,
)
from processors.routing import Member, RoutingState, rotation, utc_day

StepFn = Callable[[dict[str, Any], Execution, RoutingState], bool]
"""Runs one step on (context, execution so far, routing state); False stops the workflow."""


@dataclass(frozen=True, slots=True)
class ApprovalFallbacks:
    """What an approval step does without a yes: its `on_reject` steps, and on timeout."""

    on_reject: tuple[StepFn, ...]
    on_timeout: str
    timeout_branch: tuple[StepFn, ...]


@dataclass(frozen=True, slots=True)
class CompiledWorkflow:
    workflow_id: str
    version: int
    event_types: frozenset[str]
    trigger_condition: Predicate | None
    trigger: Condition | None
    steps: tuple[StepFn, ...]
    uses_round_robin: bool
    uses_account_match: bool
    """Whether a route step keeps a lead's company with its account owner: only then does a batch
    need the org's account owners."""
    reenrollment_types: frozenset[str] = frozenset()
    reenrollment_condition: Predicate | None = None
    watched_fields: frozenset[str] = frozenset()
    """Fields its `changed*` conditions compare, which the worker remembers per lead."""
    continuations: Mapping[str, tuple[StepFn, ...]] = field(default_factory=dict)
    """Per approval or wait step (by path): the rest of the workflow after it, in order, out of
    any branch it sits in. What a resumed execution runs."""
    approval_fallbacks: Mapping[str, ApprovalFallbacks] = field(default_factory=dict)
    exit_condition: Predicate | None = None
    uses_model: bool = False
    """Whether a step reads the learned model (`model.*`, `min_probability`): only then is the
    org's model consulted for an event."""
    calls_agents: bool = False
    """Whether it has an `agent` step: only then does a worker read the org's agents."""

    @property
    def pauses(self) -> bool:
        """Whether an execution of it can stop at an approval or wait step."""
        return bool(self.continuations)

    def triggers(self, event: Mapping[str, Any]) -> bool:
        """Whether the event meets the enrollment trigger: its type and the trigger condition."""
        if event["event_type"] not in self.event_types:
            return False
        return self.trigger_condition is None or self.trigger_condition(event)

    def reenrolls(self, event: Mapping[str, Any]) -> bool:
        """Whether a re-enrollment trigger fires (always false when re-enrollment is off)."""
        if event["event_type"] not in self.reenrollment_types:
            return False
        return self.reenrollment_condition is None or self.reenrollment_condition(event)

    def evaluate(
        self,
        event: Mapping[str, Any],
        routing: RoutingState,
        trace: bool = False,
        model: Mapping[str, Any] | None = None,
    ) -> Execution:
        """Runs every step for an enrolled event. Call only when `triggers(event)` is true. `model`:
        what the org's learned model says of the lead (`model_context`), which steps read as
        `model.*`; pass it when `uses_model`."""
        event_id = str(event["event_id"])
        # Positional: a keyword argument costs a dict entry per call, and this runs per evaluation.
        execution = Execution(
            ids.execution_id(event_id, self.workflow_id, self.version),
            str(event["org_id"]),
            self.workflow_id,
            self.version,
            event_id,
            str(event["event_type"]),
            lead_id_of(event),
            int(event["occurred_at_ms"]),
        )
        if trace:
            execution.trace = []
        context = dict(event)
        if model is not None:
            context["model"] = model
        run_steps(self.steps, context, execution, routing)
        return execution


Triggers = Mapping[str, Callable[[Mapping[str, Any]], tuple[bool, ...]]]
"""Event type -> which of a list of workflows an event of that type triggers, in order."""


def compile_triggers(workflows: Sequence[CompiledWorkflow]) -> Triggers:
    """For each event type, one generated function answering, for each workflow, what
    `workflow.triggers(event)` answers. Every event is checked against every active workflow of its
    org; one call that reads the event once costs less than a call per workflow, and a workflow
    the event's type cannot trigger is a constant."""
    types = sorted({event_type for workflow in workflows for event_type in workflow.event_types})
    return {
        event_type: compile_conditions(
            [
                (workflow.trigger if workflow.trigger is not None else True)
                if event_type in workflow.event_types
                else False
                for workflow in workflows
            ]
        )
        for event_type in types
    }


def run_steps(steps: Sequence[StepFn], context: dict[str, Any], execution: Execution, routing: RoutingState) -> bool:
    for step in steps:  # noqa: SIM110 - a loop, not all(genexpr): steps run in order on the hot path
        if not step(context, execution, routing):
            return False
    return True


def compile_workflow(workflow_id: str, version: int, definition: WorkflowDefinition) -> CompiledWorkflow:
    trigger = definition.trigger
    again = trigger.reenrollment
    return CompiledWorkflow(
        workflow_id=workflow_id,
        version=version,
        event_types=frozenset(t.value for t in trigger.event_types),
        trigger_condition=compile_condition(trigger.condition) if trigger.condition else None,
        trigger=trigger.condition,
        steps=_compile_steps("", definition.steps),
        uses_round_robin=_uses_round_robin(definition.steps),
        uses_account_match=any(step.account_match for step in _route_steps(definition.steps)),
        reenrollment_types=frozenset(t.value for t in again.event_types) if again.enabled else frozenset(),
        reenrollment_condition=compile_condition(again.condition) if again.enabled and again.condition else None,
        watched_fields=watched_fields(definition),
        continuations=_continuations(definition.steps, "", ()),
        approval_fallbacks={
            path: ApprovalFallbacks(
                _compile_steps(f"{path}.reject.", step.on_reject),
                step.on_timeout,
                _compile_steps(f"{path}.timeout.", step.timeout_branch),
            )
            for path, step in pauses(definition.steps)
            if isinstance(step, ApprovalStep)
        },
        exit_condition=compile_condition(definition.exit_condition) if definition.exit_condition else None,
        uses_model=reads_model(definition),
        calls_agents=any(True for _ in agent_steps(definition.steps)),
    )


def _continuations(steps: Sequence[Step], prefix: str, after: tuple[StepFn, ...]) -> dict[str, tuple[StepFn, ...]]:
    """A branch returns to the steps after it, so the rest after a step nested in a branch is the
    rest of its arm followed by the rest after the branch."""
    found: dict[str, tuple[StepFn, ...]] = {}
    for index, step in enumerate(steps):
        if not isinstance(step, ApprovalStep | WaitStep | BranchStep):
            continue
        path = f"{prefix}{index}"
        rest = tuple(_compile_step(f"{prefix}{later}", steps[later]) for later in range(index + 1, len(steps))) + after
        if isinstance(step, BranchStep):
            for arm_index, arm in enumerate(step.arms):
                found.update(_continuations(arm.steps, f"{path}.{arm_index}.", rest))
            found.update(_continuations(step.otherwise, f"{path}.else.", rest))
        else:
            found[path] = rest
    return found


def _route_steps(steps: Sequence[Step]) -> Iterator[RouteStep]:
    """Every route step, inside branches too."""
    for step in steps:
        if isinstance(step, RouteStep):
            yield step
        elif isinstance(step, BranchStep):
            for arm_steps in [arm.steps for arm in step.arms] + [step.otherwise]:
                yield from _route_steps(arm_steps)


def _uses_round_robin(steps: Sequence[Step]) -> bool:
    return any(step.team or step.account_match or any(rule.team for rule in step.rules) for step in _route_steps(steps))


def _compile_steps(prefix: str, steps: Sequence[Step]) -> tuple[StepFn, ...]:
    return tuple(_compile_step(f"{prefix}{index}", step) for index, step in enumerate(steps))


def _compile_step(path: str, step: Step) -> StepFn:
    if isinstance(step, FilterStep):
        return _filter(path, step)
    if isinstance(step, ScoreStep):
        return _score(path, step)
    if isinstance(step, TierStep):
        return _tier(path, step)
    if isinstance(step, RouteStep):
        return _route(path, step)
    if isinstance(step, BranchStep):
        return _branch(path, step)
    if isinstance(step, ApprovalStep):
        return _approval(path, step)
    if isinstance(step, WaitStep):
        return _wait(path, step)
    if isinstance(step, AgentStep):
        return _agent(path, step)
    return _action(path, step)


def _note(execution: Execution, path: str, kind: str, **details: Any) -> None:
    assert execution.trace is not None
    execution.trace.append({"step": path, "type": kind, **details})


def _filter(path: str, step: FilterStep) -> StepFn:
    holds = compile_condition(step.condition)
    reason = f"step {path} filter not met: {describe(step.condition)}"

    passed_token, failed_token = f"{path}:filter:pass", f"{path}:filter:fail"

    def run(context: dict[str, Any], execution: Execution, _: RoutingState) -> bool:
        passed = holds(context)
        if execution.trace is not None:
            _note(execution, path, "filter", passed=passed, condition=explain(step.condition, context))
        execution.decisions.append(passed_token if passed else failed_token)
        if passed:
            return True
        execution.status = ExecutionStatus.FILTERED_OUT
        execution.status_reason = reason
        return False

    return run


SCORE_MIN: Final = -(2**31)
SCORE_MAX: Final = 2**31 - 1
"""A score and each entry of its breakdown are an Avro `int` and a ClickHouse `Int32`."""


def _int32(value: int) -> int:
    return SCORE_MIN if value < SCORE_MIN else SCORE_MAX if value > SCORE_MAX else value


def _score(path: str, step: ScoreStep) -> StepFn:
    """A version stored before the score bounds (`processors.model`) may have points and bounds of
    any size: the total is clamped to Int32 as the step's own floor and ceiling clamp it (no step
    leaves it outside, so neither does a resumed execution), and so is each breakdown entry, so no
    record carries a number its consumers cannot hold. For a definition within the bounds nothing
    changes, and the hot path pays the two comparisons it paid for the step's own bounds."""
    rules = tuple((rule.id, rule.points) for rule in step.rules)
    matches = compile_conditions([rule.when for rule in step.rules])
    floor = SCORE_MIN if step.floor is None else _int32(step.floor)
    ceiling = SCORE_MAX if step.ceiling is None else _int32(step.ceiling)

    def run(context: dict[str, Any], execution: Execution, _: RoutingState) -> bool:
        breakdown = execution.score_breakdown
        total = execution.score
        for (rule_id, points), matched in zip(rules, matches(context)):  # noqa: B905 - same length by construction
            if matched:
                awarded = breakdown.get(rule_id, 0) + points
                breakdown[rule_id] = awarded if SCORE_MIN <= awarded <= SCORE_MAX else _int32(awarded)
                total += points
        if total < floor:
            total = floor
        if total > ceiling:
            total = ceiling
        if execution.trace is not None:
            _note(
                execution,
                path,
                "score",
                total=total,
                rules=[
                    {"id": rule.id, "points": rule.points, "condition": explain(rule.when, context)}
                    for rule in step.rules
                ],
            )
        execution.score = total
        context["score"] = total
        return True

    return run


def _tier(path: str, step: TierStep) -> StepFn:
    if step.reads_model:
        return _tier_with_probability(path, step)
    thresholds = tuple(sorted(((t.min_score or 0, t.tier) for t in step.thresholds), reverse=True))
    default = step.default_tier

    tokens = {name: f"{path}:tier:{name}" for name in (default, *(name for _, name in thresholds))}

    def run(context: dict[str, Any], execution: Execution, _: RoutingState) -> bool:
        score = execution.score
        tier = default
        for minimum, name in thresholds:
            if score >= minimum:
                tier = name
                break
        if execution.trace is not None:
            _note(execution, path, "tier", score=score, tier=tier)
        execution.decisions.append(tokens[tier])
        execution.tier = tier
        context["tier"] = tier
        return True

    return run


def model_probability(context: Mapping[str, Any]) -> float | None:
    """`model.probability` of an evaluation's context; None without a model."""
    model = context.get("model")
    value = model.get("probability") if isinstance(model, Mapping) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _tier_with_probability(path: str, step: TierStep) -> StepFn:
    """Thresholds on the learned probability (and the score, when they name one too), highest first."""
    thresholds = tuple(
        sorted(
            ((t.min_score, t.min_probability or 0.0, t.tier) for t in step.thresholds),
            key=lambda t: (t[0] or 0, t[1]),
            reverse=True,
        )
    )
    default = step.default_tier
    tokens = {name: f"{path}:tier:{name}" for name in (default, *(name for _, _, name in thresholds))}

    def run(context: dict[str, Any], execution: Execution, _: RoutingState) -> bool:
        score, probability = execution.score, model_probability(context)
        tier = default
        if probability is not None:
            for min_score, min_probability, name in thresholds:
                if probability >= min_probability and (min_score is None or score >= min_score):
                    tier = name
                    break
        if execution.trace is not None:
            _note(execution, path, "tier", score=score, probability=probability, tier=tier)
        execution.decisions.append(tokens[tier])
        execution.tier = tier
        context["tier"] = tier
        return True

    return run


Team = tuple[tuple[Member, ...], tuple[int, ...]]
"""A team's members and one cycle of its weighted rotation, computed once at compile time."""


def _team(members: Sequence[TeamMember]) -> Team:
    compiled = tuple(Member(m.owner, m.weight, m.away, m.daily_cap) for m in members)
    return compiled, rotation(compiled) if compiled else ()


_MILLISECONDS = tuple(f".{ms:03d}Z" for ms in range(1000))


def iso_timestamp(epoch_ms: int) -> str:
    """ISO 8601 in UTC with milliseconds; events of a batch share seconds, so formatting is cached."""
    return _utc_second(epoch_ms // 1000) + _MILLISECONDS[epoch_ms % 1000]


@lru_cache(maxsize=4096)
def _utc_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _route(path: str, step: RouteStep) -> StepFn:
    rules = tuple(
        (rule.id, compile_condition(rule.when), rule.owner, _team(rule.team or ()), _matched(rule.id, rule.when))
        for rule in step.rules
    )
    default_team = _team(step.team)
    fallback = step.fallback_owner
    account_match = step.account_match

    def rotate(routing: RoutingState, execution: Execution, pool: str, team: Team) -> tuple[str | None, str]:
        members, order = team
        return routing.round_robin(
            execution.org_id,
            execution.workflow_id,
            pool,
            execution.lead_id,
            members,
            order,
            utc_day(execution.event_occurred_at_ms),
        )

    def choose(
        context: dict[str, Any], execution: Execution, routing: RoutingState, domain: str
    ) -> tuple[str | None, str, str]:
        """(owner or None, reason, which route decided: account, a rule id, or default)."""
        if domain:
            holder = routing.account_owner(execution.org_id, domain)
            if holder is not None:
                return holder, f"account match: {domain} is held by {holder}", "account"
        for rule_id, holds, rule_owner, rule_team, text in rules:
            if holds(context):
                if rule_owner is not None:
                    return rule_owner, text, rule_id
                owner, rotation_reason = rotate(routing, execution, rule_id, rule_team)
                return owner, f"{text}; {rotation_reason}", rule_id
        if default_team[0]:
            owner, reason = rotate(routing, execution, "default team", default_team)
            return owner, reason, "default"
        return None, "no territory rule matched and no default team", "default"

    def run(context: dict[str, Any], execution: Execution, routing: RoutingState) -> bool:
        domain = business_domain(lead_email(context)) if account_match else ""
        owner, reason, decided_by = choose(context, execution, routing, domain)
        if owner is None:
            owner, reason, decided_by = fallback, f"fallback owner: {reason}", "fallback"
        elif domain:
            routing.claim_account(execution.org_id, domain, owner)
        if execution.trace is not None:
            _note(execution, path, "route", owner=owner, reason=reason)
        execution.owner = owner
        execution.routing_reason = reason
        execution.decisions.append(f"{path}:route:{decided_by}")
        context["owner"] = owner
        return True

    return run


def _matched(rule_id: str, condition: Condition) -> str:
    """A territory rule's reason, written once when compiled rather than per routed lead."""
    return f"territory rule {rule_id!r} matched: {describe(condition)}"


def _branch(path: str, step: BranchStep) -> StepFn:
    arms = tuple(
        (compile_condition(arm.when), _compile_steps(f"{path}.{index}.", arm.steps))
        for index, arm in enumerate(step.arms)
    )
    otherwise = _compile_steps(f"{path}.else.", step.otherwise)

    def run(context: dict[str, Any], execution: Execution, routing: RoutingState) -> bool:
        for index, (holds, steps) in enumerate(arms):
            if holds(context):
                if execution.trace is not None:
                    _note(execution, path, "branch", taken=index, condition=explain(step.arms[index].when, context))
                execution.decisions.append(f"{path}:branch:{index}")
                return run_steps(steps, context, execution, routing)
        if execution.trace is not None:
            _note(execution, path, "branch", taken="otherwise")
        execution.decisions.append(f"{path}:branch:else")
        return run_steps(otherwise, context, execution, routing)

    return run


def _approval(path: str, step: ApprovalStep) -> StepFn:
    reason = f"waiting at approval step {path} for " + ", ".join(step.approvers)
    timeout_ms = round(step.timeout_hours * _HOUR_MS)
    approvers = tuple(step.approvers)
    token = f"{path}:approval:requested"

    def run(context: dict[str, Any], execution: Execution, _: RoutingState) -> bool:
        if execution.trace is not None:
            _note(execution, path, "approval", approvers=list(approvers), timeout_hours=step.timeout_hours)
        execution.status = ExecutionStatus.AWAITING_APPROVAL
        execution.status_reason = reason
        execution.decisions.append(token)
        execution.pause = Pause(path, "approval", context, delay_ms=timeout_ms, approvers=approvers)
        return False

    return run


_HOUR_MS = 3_600_000


def _wait(path: str, step: WaitStep) -> StepFn:
    delay_ms = round(step.hours * _HOUR_MS) if step.hours is not None else 0
    until_ms = round(step.until.timestamp() * 1000) if step.until is not None else None
    read_field = compile_getter(step.until_field) if step.until_field is not None else None
    offset_ms = round(step.offset_hours * _HOUR_MS)

    def run(context: dict[str, Any], execution: Execution, _: RoutingState) -> bool:
        until = until_ms
        if read_field is not None:
            moment = epoch_ms(read_field(context))
            if moment is None:
                if execution.trace is not None:
                    _note(execution, path, "wait", waited=False, reason=f"{step.until_field} holds no date")
                execution.decisions.append(f"{path}:wait:skipped")
                return True
            until = moment + offset_ms
        if execution.trace is not None:
            _note(execution, path, "wait", waited=True, delay_ms=delay_ms, until_ms=until)
        execution.status = ExecutionStatus.WAITING
        execution.status_reason = f"waiting at wait step {path}"
        execution.decisions.append(f"{path}:wait:started")
        execution.pause = Pause(path, "wait", context, delay_ms=delay_ms, until_ms=until)
        return False

    return run


AGENT_CALL: Final = "agent_call"
"""The action an `agent` step records when it calls its agent."""


def _agent(path: str, step: AgentStep) -> StepFn:
    """Plans the call and goes on: the agent runs on its own, later, through Kafka. The workers
    resolve the agent, check the lead against its input schema and its status, and send the call
    (`streams/agent_calls.py`); the engine has no control plane to ask."""
    agent_id, event_type = step.agent_id, step.event_type

    def run(context: dict[str, Any], execution: Execution, _: RoutingState) -> bool:
        lead = context.get("lead")
        called = isinstance(lead, dict)
        if called:
            event_id = ids.agent_call_event_id(execution.execution_id, path)
            execution.agent_calls.append(AgentCall(path, agent_id, event_type, context["lead"], event_id))
            execution.actions.append(AGENT_CALL)
        if execution.trace is not None:
            reason = "" if called else "the event carries no lead to call the agent with"
            _note(execution, path, "agent", agent_id=agent_id, event_type=event_type, called=called, reason=reason)
        return True

    return run


def epoch_ms(value: Any) -> int | None:
    """A lead field read as a moment: epoch milliseconds, or an ISO 8601 date or date-time (UTC
    unless it names an offset); None for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if not isinstance(value, str) or not value:
        return None
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _action(
    path: str, step: CrmUpdateAction | WebhookNotifyAction | AddTagAction | CreateTaskAction | LogAction
) -> StepFn:
    plan = _ACTION_PLANNERS[type(step)](path, step)
    action = step.action

    def run(context: dict[str, Any], execution: Execution, _: RoutingState) -> bool:
        plan(context, execution)
        execution.actions.append(action)
        if execution.trace is not None:
            _note(execution, path, "action", action=action)
        return True

    return run


Planner = Callable[[dict[str, Any], Execution], None]


def _plan_crm_update(path: str, step: Any) -> Planner:
    static = dict(step.properties)

    def plan(context: dict[str, Any], execution: Execution) -> None:
        properties = {**static, "drippulse_score": str(execution.score)}
        if execution.tier:
            properties["drippulse_tier"] = execution.tier
        if execution.owner:
            properties["owner"] = execution.owner
        execution.crm_commands.append(CrmCommandPlan(path, "update_lead", properties, lead_email(context)))

    return plan


def _plan_add_tag(path: str, step: Any) -> Planner:
    def plan(context: dict[str, Any], execution: Execution) -> None:
        execution.crm_commands.append(CrmCommandPlan(path, "add_tag", {"tag": step.tag}, lead_email(context)))

    return plan


def _plan_create_task(path: str, step: Any) -> Planner:
    def plan(context: dict[str, Any], execution: Execution) -> None:
        properties = {
            "title": step.title,
            "due_in_days": str(step.due_in_days),
            "assignee": step.assignee or execution.owner,
        }
        execution.crm_commands.append(CrmCommandPlan(path, "create_task", properties, lead_email(context)))

    return plan


def _plan_log(path: str, step: Any) -> Planner:
    def plan(context: dict[str, Any], execution: Execution) -> None:
        execution.logs.append(step.message)

    return plan


def _plan_webhook_notify(path: str, step: Any) -> Planner:
    event_type = step.event_type

    def plan(context: dict[str, Any], execution: Execution) -> None:
        payload = {
            "type": event_type,
            "timestamp": iso_timestamp(execution.event_occurred_at_ms),
            "data": {
                "execution_id": execution.execution_id,
                "workflow_id": execution.workflow_id,
                "workflow_version": execution.workflow_version,
                "event_id": execution.event_id,
                "lead_id": execution.lead_id,
                "email": lead_email(context),
                "score": execution.score,
                "tier": execution.tier,
                "owner": execution.owner,
                "routing_reason": execution.routing_reason,
            },
        }
        execution.notifications.append(WebhookNotification(path, event_type, payload))

    return plan


_ACTION_PLANNERS: dict[type, Callable[[str, Any], Planner]] = {
    CrmUpdateAction: _plan_crm_update,
    AddTagAction: _plan_add_tag,
    CreateTaskAction: _plan_create_task,
    LogAction: _plan_log,
    WebhookNotifyAction: _plan_webhook_notify,
}
