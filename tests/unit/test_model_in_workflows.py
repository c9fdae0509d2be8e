"""Workflows read the learned model's probability in score rules and tier thresholds; outcome events
reach only the workflows that ask for them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from processors.compiler import compile_workflow
from processors.enrollment import EnrollmentState
from processors.learned_model import Weights, model_context
from processors.model import WorkflowDefinition
from processors.routing import RoutingState
from processors.templates import LEAD_QUALIFICATION
from tests.unit.test_engine import event

LIKELY = {"field": "model.probability", "op": "gte", "value": 0.6}


def definition(*steps: dict[str, Any], **trigger: Any) -> dict[str, Any]:
    return {"trigger": {"event_types": ["lead.created"], **trigger}, "steps": list(steps)}


def scored(probability: float | None) -> dict[str, Any] | None:
    return None if probability is None else {"probability": probability, "version": 4, "trained_on": 900}


PREDICTIVE = definition(
    {"type": "score", "rules": [{"id": "likely", "when": LIKELY, "points": 40}]},
    {
        "type": "tier",
        "thresholds": [
            {"tier": "A", "min_score": 30, "min_probability": 0.8},
            {"tier": "B", "min_score": 0, "min_probability": 0.3},
        ],
        "default_tier": "C",
    },
)


@pytest.mark.parametrize(
    ("probability", "score", "tier"), [(0.9, 40, "A"), (0.7, 40, "B"), (0.5, 0, "B"), (0.1, 0, "C"), (None, 0, "C")]
)
def test_score_rules_and_tier_thresholds_read_the_learned_probability(
    probability: float | None, score: int, tier: str
) -> None:
    workflow = compile_workflow("wf", 1, WorkflowDefinition.model_validate(PREDICTIVE))
    assert workflow.uses_model
    execution = workflow.evaluate(event(), RoutingState(), model=scored(probability))
    assert (execution.score, execution.tier) == (score, tier)


def test_probability_thresholds_alone_pick_the_highest_reached() -> None:
    tiers = definition(
        {
            "type": "tier",
            "thresholds": [{"tier": "B", "min_probability": 0.2}, {"tier": "A", "min_probability": 0.5}],
            "default_tier": "C",
        }
    )
    workflow = compile_workflow("wf", 1, WorkflowDefinition.model_validate(tiers))
    traced = workflow.evaluate(event(), RoutingState(), trace=True, model=scored(0.55))
    assert traced.tier == "A"
    assert traced.trace is not None and traced.trace[0]["probability"] == 0.55


def test_the_probability_comes_from_the_lead_the_event_carries() -> None:
    model = Weights(version=2, trained_on=10, bias=0.0, weights={})
    context = model_context(model, event()["lead"])
    assert context == {"probability": 0.5, "version": 2, "trained_on": 10}
    assert model_context(model, None)["probability"] is None


def test_rules_only_workflows_never_ask_for_the_model() -> None:
    assert not compile_workflow("wf", 1, WorkflowDefinition.model_validate(LEAD_QUALIFICATION)).uses_model


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"trigger": {"event_types": ["lead.created"], "condition": LIKELY}},
            "a trigger cannot read model.probability",
        ),
        (
            {"exit_condition": LIKELY, "steps": [{"type": "wait", "hours": 1}]},
            "an exit condition cannot read model.probability",
        ),
        (
            {"steps": [{"type": "filter", "condition": {"field": "model.auc", "op": "gt", "value": 1}}]},
            "model.auc: the learned model offers",
        ),
        (
            {
                "steps": [
                    {
                        "type": "tier",
                        "thresholds": [{"tier": "A", "min_score": 5}, {"tier": "B", "min_probability": 0.1}],
                        "default_tier": "C",
                    }
                ]
            },
            "names the same minimums",
        ),
        (
            {"steps": [{"type": "tier", "thresholds": [{"tier": "A"}], "default_tier": "C"}]},
            "needs min_score, min_probability or both",
        ),
    ],
)
def test_the_model_is_read_where_it_is_known(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WorkflowDefinition.model_validate({**copy.deepcopy(PREDICTIVE), **changes})


def test_an_outcome_neither_enrolls_a_lead_in_a_qualification_nor_ends_its_enrollment() -> None:
    workflow = compile_workflow("wf", 1, WorkflowDefinition.model_validate(LEAD_QUALIFICATION))
    enrollments = EnrollmentState()
    created = event()
    assert workflow.triggers(created) and enrollments.admit(workflow, created, "lead-1")[0]
    enrollments.finish(workflow.evaluate(created, RoutingState()))
    for outcome in ("lead.converted", "lead.disqualified"):
        assert not workflow.triggers({**created, "event_id": f"evt-{outcome}", "event_type": outcome})
    assert enrollments.enrollments[("org-1", "wf", "lead-1")].event_id == "evt-1"


def test_a_workflow_may_start_on_an_outcome_and_an_outcome_may_take_a_waiting_lead_out() -> None:
    won = definition({"type": "action", "action": "add_tag", "tag": "customer"}, event_types=["lead.converted"])
    workflow = compile_workflow("wf", 1, WorkflowDefinition.model_validate(won))
    converted = {**event(), "event_type": "lead.converted"}
    assert workflow.triggers(converted) and workflow.evaluate(converted, RoutingState()).actions == ["add_tag"]
    nurture = {
        **definition({"type": "wait", "hours": 72}, {"type": "action", "action": "add_tag", "tag": "nurtured"}),
        "exit_condition": {"field": "event_type", "op": "in", "value": ["lead.converted", "lead.disqualified"]},
    }
    exits = compile_workflow("wf", 1, WorkflowDefinition.model_validate(nurture)).exit_condition
    assert exits is not None and exits(converted) and not exits(event())
