"""Enrollment: whether a triggered event starts a workflow run for its lead.

A lead enrolls in a workflow once. It enrolls again only when the workflow enables re-enrollment,
a re-enrollment trigger fires, and the lead is not still enrolled (its last run paused at an
approval or wait and has not finished). Each enrollment remembers the event that caused it, so a
replay of that very event is admitted again and reproduces the same execution instead of being
refused as a repeat. A manual or scheduled run targets one workflow and enrolls whatever the
trigger and re-enrollment settings say, unless the lead is still enrolled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from processors.compiler import CompiledWorkflow
from processors.execution import PAUSED, Execution

EnrollmentKey = tuple[str, str, str]
"""(org_id, workflow_id, lead_id)."""


class Enrollment:
    """Built for every enrollment a batch loads or makes: a plain class, as the plans in
    `processors.execution` are, for the same reason."""

    __slots__ = ("active", "event_id", "execution_id", "number")

    def __init__(self, number: int, event_id: str, active: bool, execution_id: str = "") -> None:
        self.number = number
        """1 for the first enrollment, 2 for the first re-enrollment, and so on."""
        self.event_id = event_id
        """The event that caused the latest enrollment."""
        self.active = active
        """True while the run is paused (approval or wait): the lead is still enrolled."""
        self.execution_id = execution_id
        """The latest run's execution, which the orchestrator names when it finishes the run."""

    def as_json(self) -> list[object]:
        """The stored form: [number, event_id, active, execution_id]."""
        return [self.number, self.event_id, self.active, self.execution_id]

    @classmethod
    def from_json(cls, stored: list[object]) -> Enrollment:
        """Also reads the three-element form written before runs could pause and resume."""
        number, event_id, active, *rest = stored
        return cls(int(str(number)), str(event_id), bool(active), str(rest[0]) if rest else "")


@dataclass
class EnrollmentState:
    enrollments: dict[EnrollmentKey, Enrollment] = field(default_factory=dict)
    changed: set[EnrollmentKey] = field(default_factory=set)

    def admit(
        self, workflow: CompiledWorkflow, event: Mapping[str, Any], lead_id: str, targeted: bool = False
    ) -> tuple[bool, str]:
        """Call for an event that `workflow.triggers`, or that targets the workflow (`targeted`: a
        manual or scheduled run, which re-enrolls a lead whenever it is not still enrolled).
        (admitted, why)."""
        key = (str(event["org_id"]), workflow.workflow_id, lead_id)
        current = self.enrollments.get(key)
        event_id = str(event["event_id"])
        if current is None:
            self._enroll(key, 1, event_id)
            return True, "first enrollment"
        if current.event_id == event_id:
            return True, "replay of the enrolling event"
        if current.active:
            return False, "still enrolled: the previous run is paused at an approval or wait"
        if targeted:
            self._enroll(key, current.number + 1, event_id)
            return True, f"targeted run #{current.number + 1}"
        if not workflow.reenrolls(event):
            return False, "already enrolled; re-enrollment is off or its trigger did not fire"
        self._enroll(key, current.number + 1, event_id)
        return True, f"re-enrollment #{current.number}"

    def finish(self, execution: Execution) -> None:
        """A paused run keeps the lead enrolled; any other outcome ends the enrollment."""
        key = (execution.org_id, execution.workflow_id, execution.lead_id)
        current = self.enrollments[key]
        active = execution.status in PAUSED
        if current.active != active or current.execution_id != execution.execution_id:
            self.enrollments[key] = Enrollment(current.number, current.event_id, active, execution.execution_id)
            self.changed.add(key)

    def paused_run(self, key: EnrollmentKey) -> str | None:
        """The execution id of the lead's paused run of the workflow, if it has one."""
        current = self.enrollments.get(key)
        return current.execution_id if current is not None and current.active else None

    def release(self, key: EnrollmentKey, execution_id: str) -> None:
        """The paused run `execution_id` ended (resumed to its end, or exited): the lead is free to
        enroll again. A release naming an older run changes nothing."""
        current = self.enrollments.get(key)
        if current is not None and current.active and current.execution_id == execution_id:
            self.enrollments[key] = Enrollment(current.number, current.event_id, False, execution_id)
            self.changed.add(key)

    def _enroll(self, key: EnrollmentKey, number: int, event_id: str) -> None:
        self.enrollments[key] = Enrollment(number, event_id, False)
        self.changed.add(key)
