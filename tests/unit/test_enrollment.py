from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from processors.compiler import compile_workflow
from processors.enrollment import Enrollment, EnrollmentState
from processors.model import WorkflowDefinition
from processors.routing import RoutingState

LOG = {"type": "action", "action": "log", "message": "ran"}


def workflow(reenrollment: dict[str, Any] | None = None, steps: list[dict[str, Any]] | None = None) -> Any:
    trigger: dict[str, Any] = {"event_types": ["lead.created", "lead.updated"]}
    if reenrollment is not None:
        trigger["reenrollment"] = reenrollment
    return compile_workflow("wf", 1, WorkflowDefinition.model_validate({"trigger": trigger, "steps": steps or [LOG]}))


def event(event_id: str, kind: str = "lead.created", **lead: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "org_id": "o",
        "event_type": kind,
        "occurred_at_ms": 1,
        "lead": {"lead_id": "lead-1", **lead},
    }


def run(wf: Any, state: EnrollmentState, ev: dict[str, Any]) -> tuple[bool, str]:
    admitted, why = state.admit(wf, ev, "lead-1")
    if admitted:
        state.finish(wf.evaluate(ev, RoutingState()))
    return admitted, why


def test_a_lead_is_enrolled_once_without_reenrollment() -> None:
    wf, state = workflow(), EnrollmentState()
    assert run(wf, state, event("e1")) == (True, "first enrollment")
    assert run(wf, state, event("e2", "lead.updated"))[0] is False


def test_reenrollment_needs_it_enabled_and_its_trigger() -> None:
    wf = workflow(
        {"enabled": True, "event_types": ["lead.updated"], "condition": {"field": "lead.title", "op": "exists"}}
    )
    state = EnrollmentState()
    assert run(wf, state, event("e1"))[0]
    assert run(wf, state, event("e2", "lead.created"))[0] is False, "not a re-enrollment trigger"
    assert run(wf, state, event("e3", "lead.updated"))[0] is False, "re-enrollment condition not met"
    assert run(wf, state, event("e4", "lead.updated", title="CTO")) == (True, "re-enrollment #1")
    assert state.enrollments[("o", "wf", "lead-1")].number == 2


def test_never_reenrolled_while_still_enrolled() -> None:
    wf = workflow({"enabled": True, "event_types": ["lead.updated"]}, [{"type": "wait", "hours": 1}])
    state = EnrollmentState()
    assert run(wf, state, event("e1"))[0]
    assert state.enrollments[("o", "wf", "lead-1")].active
    assert run(wf, state, event("e2", "lead.updated"))[1].startswith("still enrolled")


def test_a_release_of_the_paused_run_frees_the_lead_and_an_older_one_does_not() -> None:
    wf = workflow({"enabled": True, "event_types": ["lead.updated"]}, [{"type": "wait", "hours": 1}])
    state = EnrollmentState()
    run(wf, state, event("e1"))
    key = ("o", "wf", "lead-1")
    paused = state.paused_run(key)
    assert paused is not None
    state.release(key, "an-older-run")
    assert state.paused_run(key) == paused
    state.release(key, paused)
    assert state.paused_run(key) is None and key in state.changed
    assert run(wf, state, event("e2", "lead.updated")) == (True, "re-enrollment #1")


def test_a_targeted_run_enrolls_again_unless_still_enrolled() -> None:
    wf, state = workflow(steps=[{"type": "wait", "hours": 1}]), EnrollmentState()
    assert state.admit(wf, event("e1"), "lead-1")[0]
    assert state.admit(wf, event("manual-1"), "lead-1", targeted=True) == (True, "targeted run #2")
    state.finish(wf.evaluate(event("manual-1"), RoutingState()))
    assert state.admit(wf, event("manual-2"), "lead-1", targeted=True)[0] is False


def test_the_stored_form_of_before_pauses_still_reads() -> None:
    assert Enrollment.from_json([2, "e9", False]).as_json() == [2, "e9", False, ""]


def test_a_replay_of_the_enrolling_event_is_admitted_again() -> None:
    wf, state = workflow(), EnrollmentState()
    assert run(wf, state, event("e1"))[0]
    assert run(wf, state, event("e1")) == (True, "replay of the enrolling event")


def test_reenrollment_types_must_be_trigger_types() -> None:
    with pytest.raises(ValidationError, match="also be trigger event types"):
        WorkflowDefinition.model_validate(
            {
                "trigger": {
                    "event_types": ["lead.created"],
                    "reenrollment": {"enabled": True, "event_types": ["lead.updated"]},
                },
                "steps": [LOG],
            }
        )
