"""What-if replay: the same real events through two workflow versions, and what would change.

Each version gets its own fresh routing state and sees the events in their original order, so a
difference in owners means the versions route differently, not that one started mid-rotation.
Every triggering event is evaluated (enrollment is not simulated): the question is what each
version decides for this traffic. Lead values for `changed*` conditions are remembered along the
window as the worker would, starting from nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from processors.compiler import CompiledWorkflow
from processors.events import lead_id_of
from processors.lead_memory import LeadMemory
from processors.routing import RoutingState

CHANGE_KINDS = ("enrollment", "tier", "owner", "actions")


@dataclass(frozen=True)
class Outcome:
    enrollment: bool
    status: str = ""
    tier: str = ""
    owner: str = ""
    actions: tuple[str, ...] = ()


def outcome(workflow: CompiledWorkflow, event: Mapping[str, Any], state: RoutingState) -> Outcome:
    if not workflow.triggers(event):
        return Outcome(enrollment=False)
    execution = workflow.evaluate(event, state)
    return Outcome(True, execution.status.value, execution.tier, execution.owner, tuple(execution.actions))


@dataclass
class ReplayReport:
    events: int = 0
    evaluated: int = 0
    changed_leads: dict[str, set[str]] = field(default_factory=lambda: {kind: set() for kind in CHANGE_KINDS})
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {kind: [] for kind in CHANGE_KINDS})

    def as_dict(self) -> dict[str, Any]:
        changed_any = set().union(*self.changed_leads.values())
        return {
            "events": self.events,
            "evaluated": self.evaluated,
            "leads_changed": len(changed_any),
            "changes": {kind: len(leads) for kind, leads in self.changed_leads.items()},
            "examples": self.examples,
        }


def compare_versions(
    base: CompiledWorkflow, candidate: CompiledWorkflow, events: Iterable[Mapping[str, Any]], examples: int
) -> ReplayReport:
    report = ReplayReport()
    base_state, candidate_state = RoutingState(), RoutingState()
    memory, watched = LeadMemory(), base.watched_fields | candidate.watched_fields
    for original in events:
        report.events += 1
        event, lead_id = dict(original), lead_id_of(original)
        if watched:
            memory.recall(event, lead_id, watched)
        before, after = outcome(base, event, base_state), outcome(candidate, event, candidate_state)
        if watched:
            memory.remember(event, lead_id, watched)
        if not (before.enrollment or after.enrollment):
            continue
        report.evaluated += 1
        for kind in CHANGE_KINDS:
            was, now = getattr(before, kind), getattr(after, kind)
            if was == now or (kind != "enrollment" and not (before.enrollment and after.enrollment)):
                continue
            report.changed_leads[kind].add(lead_id)
            if len(report.examples[kind]) < examples:
                report.examples[kind].append(
                    {"event_id": event["event_id"], "lead_id": lead_id, "before": _plain(was), "after": _plain(now)}
                )
    return report


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
