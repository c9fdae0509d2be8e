"""A plain walk over a workflow definition: the oracle the compiled closures must agree with."""

from __future__ import annotations

from typing import Any

from processors.explain import holds
from processors.model import (
    AddTagAction,
    AgentStep,
    ApprovalStep,
    BranchStep,
    CreateTaskAction,
    CrmUpdateAction,
    FilterStep,
    LogAction,
    RouteStep,
    ScoreStep,
    TierStep,
    WaitStep,
    WebhookNotifyAction,
    WorkflowDefinition,
)
from processors.routing import Member, RoutingState, rotation


def run_reference(definition: WorkflowDefinition, event: dict[str, Any], state: RoutingState) -> dict[str, Any]:
    ctx = dict(event)
    out: dict[str, Any] = {
        "status": "completed",
        "score": 0,
        "breakdown": {},
        "tier": "",
        "owner": "",
        "actions": [],
        "logs": [],
        "crm": [],
        "agent_calls": [],
    }

    def route(step: RouteStep) -> None:
        def rotate(pool: str, team: list[Any]) -> str | None:
            members = [Member(m.owner, m.weight, m.away, m.daily_cap) for m in team]
            day = "1970-01-01"
            return state.round_robin(
                event["org_id"], "wf", pool, event["lead"]["lead_id"], members, rotation(members), day
            )[0]

        owner = None
        for rule in step.rules:
            if holds(rule.when, ctx):
                owner = rule.owner if rule.owner is not None else rotate(rule.id, rule.team or [])
                break
        else:
            if step.team:
                owner = rotate("default team", step.team)
        out["owner"] = ctx["owner"] = owner if owner is not None else step.fallback_owner

    def walk(steps: list[Any], prefix: str) -> bool:
        for index, step in enumerate(steps):
            path = f"{prefix}{index}"
            if isinstance(step, FilterStep) and not holds(step.condition, ctx):
                out["status"] = "filtered_out"
                return False
            if isinstance(step, ScoreStep):
                for rule in step.rules:
                    if holds(rule.when, ctx):
                        out["breakdown"][rule.id] = out["breakdown"].get(rule.id, 0) + rule.points
                        out["score"] += rule.points
                if step.floor is not None:
                    out["score"] = max(out["score"], step.floor)
                if step.ceiling is not None:
                    out["score"] = min(out["score"], step.ceiling)
                ctx["score"] = out["score"]
            if isinstance(step, TierStep):
                reached = [t for t in step.thresholds if out["score"] >= t.min_score]
                out["tier"] = ctx["tier"] = (
                    max(reached, key=lambda t: t.min_score).tier if reached else step.default_tier
                )
            if isinstance(step, RouteStep):
                route(step)
            if isinstance(step, BranchStep):
                taken = next(((k, arm) for k, arm in enumerate(step.arms) if holds(arm.when, ctx)), None)
                arm_steps, arm_prefix = (
                    (taken[1].steps, f"{path}.{taken[0]}.") if taken else (step.otherwise, f"{path}.else.")
                )
                if not walk(arm_steps, arm_prefix):
                    return False
            if isinstance(step, ApprovalStep | WaitStep):
                out["status"] = "awaiting_approval" if isinstance(step, ApprovalStep) else "waiting"
                return False
            if isinstance(step, CrmUpdateAction | AddTagAction | CreateTaskAction | LogAction | WebhookNotifyAction):
                out["actions"].append(step.action)
                if isinstance(step, LogAction):
                    out["logs"].append(step.message)
                elif not isinstance(step, WebhookNotifyAction):
                    out["crm"].append(path)
            if isinstance(step, AgentStep):
                out["actions"].append("agent_call")
                out["agent_calls"].append((path, step.agent_id, event["lead"]))
        return True

    walk(definition.steps, "")
    return out
