"""The demo's reading of a `score_lead` explanation (processors/explain.py output)."""

from __future__ import annotations

from drippulse.demo_agent import why
from processors.explain import explain
from processors.model import WorkflowDefinition
from processors.templates import lead_qualification_agent

LEAD = {"title": "CTO", "email": "ada@initech.net", "employees": 800, "industry": "software"}


def _rules() -> dict[str, str]:
    policy = WorkflowDefinition.model_validate(lead_qualification_agent()["policy"])
    score = next(step for step in policy.steps if step.type == "score")
    context = {"lead": LEAD, "model": {"probability": 0.5441216}}
    return {rule.id: why(explain(rule.when, context)) for rule in score.rules}


def test_each_rule_shows_the_value_it_read_and_what_it_was_compared_with() -> None:
    rules = _rules()
    assert rules["senior_title"] == "lead.title = 'CTO': contains 'vp' or contains 'director' or contains 'head of'"
    assert rules["mid_market"] == "lead.employees = 800: gte 200"
    assert rules["demo_request"] == "lead.lead_source = None: eq 'demo_request'", "a missing field reads as None"
    assert rules["likely_to_convert"] == "model.probability = 0.544: gte 0.5"
