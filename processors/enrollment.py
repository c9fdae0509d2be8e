"""Enrollment: whether a triggered event starts a workflow run for its lead.

A lead enrolls in a workflow once. It enrolls again only when the workflow enables re-enrollment,
a re-enrollment trigger fires, and the lead is not still enrolled (its last run is pending at an
approval or wait). Each enrollment remembers the event that caused it, so a replay of that very
event is admitted again and reproduces the same execution instead of being refused as a repeat.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from processors.compiler import CompiledWorkflow
from processors.execution import Execution, ExecutionStatus

EnrollmentKey = tuple[str, str, str]
"""(org_id, workflow_id, lead_id)."""


class Enrollment:
    """Built for every enrollment a batch loads or makes: a plain class, as the plans in
    `processors.execution` are, for the same reason."""

    __slots__ = ("active", "event_id", "number")

    def __init__(self, number: int, event_id: str, active: bool) -> None:
        self.number = number
        """1 for the first enrollment, 2 for the first re-enrollment, and so on."""
        self.event_id = event_id
        """The event that caused the latest enrollment."""
        self.active = active
        """True while the run is pending (approval or wait): the lead is still enrolled."""

    def as_json(self) -> list[object]:
        """The stored form: [number, event_id, active]."""
        return [self.number, self.event_id, self.active]


@dataclass
class EnrollmentState:
    enrollments: dict[EnrollmentKey, Enrollment] = field(default_factory=dict)
    changed: set[EnrollmentKey] = field(default_factory=set)

    def admit(self, workflow: CompiledWorkflow, event: Mapping[str, Any], lead_id: str) -> tuple[bool, str]:
        """Call for an event that `workflow.triggers`. (admitted, why)."""
        key = (str(event["org_id"]), workflow.workflow_id, lead_id)
        current = self.enrollments.get(key)
        event_id = str(event["event_id"])
        if current is None:
            self._enroll(key, 1, event_id)
            return True, "first enrollment"
        if current.event_id == event_id:
            return True, "replay of the enrolling event"
        if current.active:
            return False, "still enrolled: the previous run is pending"
        if not workflow.reenrolls(event):
            return False, "already enrolled; re-enrollment is off or its trigger did not fire"
        self._enroll(key, current.number + 1, event_id)
        return True, f"re-enrollment #{current.number}"

    def finish(self, execution: Execution) -> None:
        """A pending run keeps the lead enrolled; any other outcome ends the enrollment."""
        key = (execution.org_id, execution.workflow_id, execution.lead_id)
        current = self.enrollments[key]
        active = execution.status is ExecutionStatus.PENDING
        if current.active != active:
            self.enrollments[key] = Enrollment(current.number, current.event_id, active)
            self.changed.add(key)

    def _enroll(self, key: EnrollmentKey, number: int, event_id: str) -> None:
        self.enrollments[key] = Enrollment(number, event_id, False)
        self.changed.add(key)
