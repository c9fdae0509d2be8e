from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from processors.compiler import compile_workflow
from processors.events import EventType, validation_problems
from processors.model import ApprovalStep, WorkflowDefinition, offered
from processors.routing import RoutingState
from processors.step_types import step_models, step_types
from processors.templates import LEAD_QUALIFICATION


def test_template_is_valid() -> None:
    WorkflowDefinition.model_validate(LEAD_QUALIFICATION)


@pytest.mark.parametrize("name", [t["name"] for t in step_types()])
def test_every_step_type_example_validates(name: str) -> None:
    model, example = step_models()[name]
    model.model_validate(example)
    WorkflowDefinition.model_validate({"trigger": {"event_types": ["lead.created"]}, "steps": [example]})


def test_step_types_publish_schemas() -> None:
    for step_type in step_types():
        assert step_type["config_schema"]["type"] == "object"
        assert step_type["description"]


@pytest.mark.parametrize(
    ("mutate", "path_fragment"),
    [
        (lambda d: d["steps"][1]["rules"][0].update(points="many"), ("steps", 1)),
        (lambda d: d["steps"][3].pop("fallback_owner"), ("steps", 3)),
        (lambda d: d["steps"].append({"type": "teleport"}), ("steps", 6)),
        (lambda d: d["trigger"].update(event_types=["lead.exploded"]), ("trigger", "event_types")),
        (lambda d: d["steps"][0]["condition"]["all"][0].update(op="gt"), ("steps", 0)),
    ],
)
def test_validation_errors_name_the_bad_field(mutate, path_fragment) -> None:  # type: ignore[no-untyped-def]
    definition = copy.deepcopy(LEAD_QUALIFICATION)
    mutate(definition)
    with pytest.raises(ValidationError) as caught:
        WorkflowDefinition.model_validate(definition)
    locs = [error["loc"] for error in caught.value.errors()]
    assert any(loc[: len(path_fragment)] == path_fragment for loc in locs), locs


def test_route_rule_needs_exactly_one_assignee() -> None:
    definition = copy.deepcopy(LEAD_QUALIFICATION)
    definition["steps"][3]["rules"][0]["team"] = ["x"]
    with pytest.raises(ValidationError, match="exactly one"):
        WorkflowDefinition.model_validate(definition)


def test_event_validation_rules() -> None:
    good = {
        "event_id": "e",
        "org_id": "o",
        "event_type": EventType.LEAD_CREATED,
        "occurred_at_ms": 5,
        "lead": {"lead_id": "l"},
    }
    assert validation_problems(good, "o") == []
    assert "key" in validation_problems(good, "other")[0]
    assert validation_problems({**good, "lead": None}, "o") == ["lead: required for lead.created events"]
    assert validation_problems({**good, "event_type": EventType.CRM_DEAL_UPDATED}, "o") == [
        "crm_object: required for crm.deal.updated events"
    ]
    assert any("occurred_at_ms" in p for p in validation_problems({**good, "occurred_at_ms": 0}, "o"))


@pytest.mark.parametrize(
    ("mutate", "loc"),
    [
        (lambda d: d["steps"][1]["rules"][0].update(points=3_000_000_000), ("steps", 1, "score", "rules", 0, "points")),
        (lambda d: d["steps"][1]["rules"][0].update(points=-1_000_001), ("steps", 1, "score", "rules", 0, "points")),
        (lambda d: d["steps"][1].update(ceiling=2**31), ("steps", 1, "score", "ceiling")),
        (lambda d: d["steps"][1].update(floor=-(2**31) - 1), ("steps", 1, "score", "floor")),
        (lambda d: d["steps"][2]["thresholds"][0].update(min_score=5_000_000_000), ("steps", 2, "tier", "thresholds")),
    ],
)
def test_scores_that_an_avro_int_cannot_carry_are_refused_naming_the_field(mutate, loc) -> None:  # type: ignore[no-untyped-def]
    """A score is an Avro `int` and a ClickHouse Int32: a definition whose points or bounds leave
    that range would make records other consumers reject and rows ClickHouse wraps or refuses."""
    definition = copy.deepcopy(LEAD_QUALIFICATION)
    mutate(definition)
    with pytest.raises(ValidationError) as caught:
        WorkflowDefinition.model_validate(definition, context=offered())
    assert any(error["loc"][: len(loc)] == loc for error in caught.value.errors()), caught.value.errors()


def test_points_that_could_add_up_past_the_score_bound_are_refused() -> None:
    """Each rule within bounds, but together (over every score step and branch) past them."""
    rules = [{"id": f"r{n}", "when": {"field": "lead.title", "op": "exists"}, "points": 1_000_000} for n in range(600)]
    step = {"type": "score", "rules": rules}
    branch = {"type": "branch", "arms": [{"when": {"field": "lead.email", "op": "exists"}, "steps": [step]}]}
    definition = {"trigger": {"event_types": ["lead.created"]}, "steps": [step, branch]}
    with pytest.raises(ValidationError, match="points"):
        WorkflowDefinition.model_validate(definition, context=offered())
    WorkflowDefinition.model_validate({**definition, "steps": [step]}, context=offered())


INT32 = (-(2**31), 2**31 - 1)


def _scoring(points: list[int], floor: int | None = None, ceiling: int | None = None) -> dict[str, object]:
    """Every rule matches any lead; a second score step repeats the rules (same ids), so a rule's
    breakdown adds up across steps as well."""
    matches = {"field": "lead.lead_id", "op": "exists"}
    rules = [{"id": f"r{n}", "when": matches, "points": p} for n, p in enumerate(points)]
    step: dict[str, object] = {"type": "score", "rules": rules}
    if floor is not None:
        step["floor"] = floor
    if ceiling is not None:
        step["ceiling"] = ceiling
    return {"trigger": {"event_types": ["lead.created"]}, "steps": [step, {"type": "score", "rules": rules}]}


def _lead_created() -> dict[str, object]:
    return {
        "event_id": "evt-1",
        "org_id": "org-1",
        "event_type": EventType.LEAD_CREATED,
        "occurred_at_ms": 1_700_000_000_000,
        "lead": {"lead_id": "lead-1", "email": "ada@acme.io", "attributes": {}},
    }


def test_a_definition_stored_before_score_bounds_still_loads_and_evaluates() -> None:
    """Points had no bound before: a version stored with 2,000,000 points was valid, and its workers
    (the catalog, the orchestrator) and the API read it back without the offered context. It must
    load there, and its runs resume; only a definition offered to be stored meets the bounds."""
    stored = _scoring([2_000_000])
    with pytest.raises(ValidationError):
        WorkflowDefinition.model_validate(stored, context=offered())
    execution = compile_workflow("wf", 1, WorkflowDefinition.model_validate(stored)).evaluate(
        _lead_created(), RoutingState()
    )
    assert execution.score == 4_000_000 and execution.score_breakdown == {"r0": 4_000_000}


@given(
    points=st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=4),
    floor=st.none() | st.integers(-(2**40), 2**40),
    ceiling=st.none() | st.integers(-(2**40), 2**40),
)
@settings(max_examples=200, deadline=None)
def test_a_stored_definition_never_scores_outside_what_an_avro_int_holds(
    points: list[int], floor: int | None, ceiling: int | None
) -> None:
    """Whatever an old version stored (points of billions, bounds past 32 bits), its score and every
    breakdown entry fit the Avro `int` and ClickHouse `Int32` they are written to."""
    if floor is not None and ceiling is not None and floor > ceiling:
        floor, ceiling = ceiling, floor
    definition = WorkflowDefinition.model_validate(_scoring(points, floor, ceiling))
    execution = compile_workflow("wf", 1, definition).evaluate(_lead_created(), RoutingState())
    assert INT32[0] <= execution.score <= INT32[1]
    assert all(INT32[0] <= value <= INT32[1] for value in execution.score_breakdown.values())


def test_approvers_named_with_capital_letters_are_stored_as_deciders_are_compared() -> None:
    """Deciders are compared lower-case (api/control_plane/approvals.py): an approver written
    `Ann@Acme.io` must be able to decide."""
    step = ApprovalStep.model_validate({"type": "approval", "approvers": ["Ann@Acme.IO", "role:approver"]})
    assert step.approvers == ["ann@acme.io", "role:approver"]
