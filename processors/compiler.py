"""Turns a validated workflow definition into a `CompiledWorkflow`: a tuple of step closures.

Compilation happens once per workflow version (the worker caches the result), so evaluating an
event is a walk over prepared closures, never a walk over the JSON definition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from processors import ids
from processors.conditions import Predicate, compile_condition, describe
from processors.events import lead_id_of
from processors.execution import CrmUpdate, Execution, ExecutionStatus, WebhookNotification
from processors.model import (
    CrmUpdateAction,
    FilterStep,
    RouteStep,
    ScoreStep,
    Step,
    TierStep,
    WebhookNotifyAction,
    WorkflowDefinition,
)
from processors.routing import RoutingState

StepFn = Callable[[dict[str, Any], Execution, RoutingState], bool]
"""Runs one step on (context, execution so far, routing state); False stops the workflow."""


@dataclass(frozen=True, slots=True)
class CompiledWorkflow:
    workflow_id: str
    version: int
    event_types: frozenset[str]
    trigger_condition: Predicate | None
    steps: tuple[StepFn, ...]
    uses_round_robin: bool

    def triggers(self, event: Mapping[str, Any]) -> bool:
        """Whether the event enrolls: its type is a trigger type and the trigger condition holds."""
        if event["event_type"] not in self.event_types:
            return False
        return self.trigger_condition is None or self.trigger_condition(event)

    def evaluate(self, event: Mapping[str, Any], routing: RoutingState) -> Execution:
        """Runs every step for an enrolled event. Call only when `triggers(event)` is true."""
        event_id = str(event["event_id"])
        execution = Execution(
            execution_id=ids.execution_id(event_id, self.workflow_id, self.version),
            org_id=str(event["org_id"]),
            workflow_id=self.workflow_id,
            workflow_version=self.version,
            event_id=event_id,
            event_type=str(event["event_type"]),
            lead_id=lead_id_of(event),
            event_occurred_at_ms=int(event["occurred_at_ms"]),
        )
        context = dict(event)
        for step in self.steps:
            if not step(context, execution, routing):
                break
        return execution


def compile_workflow(workflow_id: str, version: int, definition: WorkflowDefinition) -> CompiledWorkflow:
    trigger = definition.trigger
    return CompiledWorkflow(
        workflow_id=workflow_id,
        version=version,
        event_types=frozenset(t.value for t in trigger.event_types),
        trigger_condition=compile_condition(trigger.condition) if trigger.condition else None,
        steps=tuple(_compile_step(index, step) for index, step in enumerate(definition.steps)),
        uses_round_robin=any(
            isinstance(step, RouteStep) and (step.team or any(r.team for r in step.rules))
            for step in definition.steps
        ),
    )


def _compile_step(index: int, step: Step) -> StepFn:
    if isinstance(step, FilterStep):
        return _filter(index, step)
    if isinstance(step, ScoreStep):
        return _score(step)
    if isinstance(step, TierStep):
        return _tier(step)
    if isinstance(step, RouteStep):
        return _route(step)
    if isinstance(step, CrmUpdateAction):
        return _crm_update(index, step)
    if isinstance(step, WebhookNotifyAction):
        return _webhook_notify(index, step)
    raise TypeError(f"unknown step {step!r}")


def _filter(index: int, step: FilterStep) -> StepFn:
    holds = compile_condition(step.condition)
    reason = f"step {index} filter not met: {describe(step.condition)}"

    def run(context: dict[str, Any], execution: Execution, _: RoutingState) -> bool:
        if holds(context):
            return True
        execution.status = ExecutionStatus.FILTERED_OUT
        execution.status_reason = reason
        return False

    return run


def _score(step: ScoreStep) -> StepFn:
    rules = tuple((rule.id, compile_condition(rule.when), rule.points) for rule in step.rules)

    def run(context: dict[str, Any], execution: Execution, _: RoutingState) -> bool:
        breakdown = execution.score_breakdown
        total = execution.score
        for rule_id, holds, points in rules:
            if holds(context):
                breakdown[rule_id] = breakdown.get(rule_id, 0) + points
                total += points
        execution.score = total
        context["score"] = total
        return True

    return run


def _tier(step: TierStep) -> StepFn:
    thresholds = tuple(sorted(((t.min_score, t.tier) for t in step.thresholds), reverse=True))
    default = step.default_tier

    def run(context: dict[str, Any], execution: Execution, _: RoutingState) -> bool:
        score = execution.score
        tier = next((name for minimum, name in thresholds if score >= minimum), default)
        execution.tier = tier
        context["tier"] = tier
        return True

    return run


def _route(step: RouteStep) -> StepFn:
    rules = tuple(
        (rule.id, compile_condition(rule.when), rule.owner, tuple(rule.team or ()), describe(rule.when))
        for rule in step.rules
    )
    team = tuple(step.team)
    fallback = step.fallback_owner

    def run(context: dict[str, Any], execution: Execution, routing: RoutingState) -> bool:
        owner, reason = fallback, "fallback owner: no territory rule matched and no default team"
        for rule_id, holds, rule_owner, rule_team, text in rules:
            if holds(context):
                if rule_owner is not None:
                    owner, reason = rule_owner, f"territory rule {rule_id!r} matched: {text}"
                else:
                    owner, rotation = routing.round_robin(
                        execution.org_id, execution.workflow_id, rule_id, execution.lead_id, rule_team
                    )
                    reason = f"territory rule {rule_id!r} matched: {text}; {rotation}"
                break
        else:
            if team:
                owner, reason = routing.round_robin(
                    execution.org_id, execution.workflow_id, "default team", execution.lead_id, team
                )
        execution.owner = owner
        execution.routing_reason = reason
        context["owner"] = owner
        return True

    return run


def _crm_update(index: int, step: CrmUpdateAction) -> StepFn:
    static = dict(step.properties)

    def run(context: dict[str, Any], execution: Execution, _: RoutingState) -> bool:
        properties = {**static, "drippulse_score": str(execution.score)}
        if execution.tier:
            properties["drippulse_tier"] = execution.tier
        if execution.owner:
            properties["owner"] = execution.owner
        lead = context.get("lead") or {}
        execution.crm_updates.append(CrmUpdate(index, properties, lead.get("email")))
        execution.actions.append("crm_update")
        return True

    return run


def _webhook_notify(index: int, step: WebhookNotifyAction) -> StepFn:
    event_type = step.event_type

    def run(context: dict[str, Any], execution: Execution, _: RoutingState) -> bool:
        lead = context.get("lead") or {}
        payload = {
            "type": event_type,
            "timestamp": datetime.fromtimestamp(execution.event_occurred_at_ms / 1000, UTC).isoformat(),
            "data": {
                "execution_id": execution.execution_id,
                "workflow_id": execution.workflow_id,
                "workflow_version": execution.workflow_version,
                "event_id": execution.event_id,
                "lead_id": execution.lead_id,
                "email": lead.get("email"),
                "score": execution.score,
                "tier": execution.tier,
                "owner": execution.owner,
                "routing_reason": execution.routing_reason,
            },
        }
        execution.notifications.append(WebhookNotification(index, event_type, payload))
        execution.actions.append("webhook_notify")
        return True

    return run
