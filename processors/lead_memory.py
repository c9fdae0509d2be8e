"""What the engine remembers of a lead so `changed`, `changed_to` and `changed_from` work for
producers that send only the lead's current values.

A producer may carry `previous` values on a `lead.updated` event; when it does not, the values last
seen for that lead stand in. Only the fields some active workflow's `changed*` condition watches are
remembered, so orgs that never ask "did it change?" pay nothing. What the event carries wins: the
producer knows its own history best.

Replays must decide as the first run did, but by then the memory already holds the replayed event's
own values. So each lead also keeps, for its last few events, the values that event found; an event
seen again is given exactly those.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from processors.conditions import as_text, compile_getter
from processors.events import EventType
from processors.model import Operator, WorkflowDefinition, leaves, step_conditions

CHANGE_OPERATORS = frozenset({Operator.CHANGED, Operator.CHANGED_TO, Operator.CHANGED_FROM})
REPLAYABLE_EVENTS = 8
"""How many of a lead's latest events a replay can re-run with the values they first found."""

LeadRef = tuple[str, str]
"""(org_id, lead_id)."""


def watched_fields(definition: WorkflowDefinition) -> frozenset[str]:
    """The field paths a workflow's `changed*` conditions compare, wherever they sit."""
    trigger = definition.trigger
    roots = [
        trigger.condition,
        trigger.reenrollment.condition,
        definition.exit_condition,
        *step_conditions(definition.steps),
    ]
    return frozenset(
        leaf.field for root in roots if root is not None for leaf in leaves(root) if leaf.op in CHANGE_OPERATORS
    )


@dataclass
class RememberedLead:
    """The watched values last seen for one lead, and what each of its latest events found."""

    values: dict[str, str] = field(default_factory=dict)
    found_by_event: dict[str, dict[str, str]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"values": self.values, "found": list(self.found_by_event.items())}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RememberedLead:
        return cls(dict(raw.get("values", {})), {event_id: dict(found) for event_id, found in raw.get("found", [])})


@dataclass
class LeadMemory:
    """The remembered leads a batch needs, plus which of them the batch changed."""

    leads: dict[LeadRef, RememberedLead] = field(default_factory=dict)
    changed: set[LeadRef] = field(default_factory=set)

    def recall(self, event: dict[str, Any], lead_id: str, fields: Iterable[str]) -> None:
        """Fills the event's `previous` with remembered values for the watched fields it lacks.

        Call before any workflow evaluates the event, then `remember` after."""
        if event["event_type"] == EventType.LEAD_CREATED:
            return
        lead = self.leads.get((event["org_id"], lead_id))
        if lead is None:
            return
        found = lead.found_by_event.get(event["event_id"], lead.values)
        carried = event.get("previous") or {}
        recalled = {path: found[path] for path in fields if path in found and path not in carried}
        if recalled:
            event["previous"] = {**carried, **recalled}

    def remember(self, event: Mapping[str, Any], lead_id: str, fields: Iterable[str]) -> None:
        """Records the event's values of the watched fields; a field the event does not carry keeps
        its remembered value (an update may send only what changed)."""
        key = (event["org_id"], lead_id)
        lead = self.leads.setdefault(key, RememberedLead())
        event_id = event["event_id"]
        if event_id in lead.found_by_event:
            return
        current = {path: as_text(value) for path in fields if (value := _read(event, path)) is not None}
        lead.found_by_event[event_id] = dict(lead.values)
        while len(lead.found_by_event) > REPLAYABLE_EVENTS:
            del lead.found_by_event[next(iter(lead.found_by_event))]
        lead.values.update(current)
        self.changed.add(key)


_getter = lru_cache(maxsize=4096)(compile_getter)


def _read(event: Mapping[str, Any], path: str) -> Any:
    return _getter(path)(event)
