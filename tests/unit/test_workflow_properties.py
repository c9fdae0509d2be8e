"""Property tests of whole workflows: compiled == reference, deterministic, never raising."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from processors.compiler import compile_triggers, compile_workflow
from processors.events import EventType
from processors.model import WorkflowDefinition
from processors.routing import RoutingState
from tests.unit.test_conditions import conditions, events
from tests.unit.workflow_reference import run_reference

_owners = st.sampled_from(["ann", "ben", "cat"])
_members = st.lists(
    st.one_of(
        _owners,
        st.fixed_dictionaries({"owner": _owners}, optional={"weight": st.integers(1, 3), "away": st.booleans()}),
    ),
    min_size=1,
    max_size=3,
)

_leaf_steps = st.one_of(
    st.builds(lambda c: {"type": "filter", "condition": c}, conditions),
    st.builds(
        lambda rules, floor: {
            "type": "score",
            "rules": [{"id": f"r{i}", "when": c, "points": p} for i, (c, p) in enumerate(rules)],
            **floor,
        },
        st.lists(st.tuples(conditions, st.integers(-30, 30)), min_size=1, max_size=3),
        st.one_of(st.just({}), st.just({"floor": 0}), st.just({"ceiling": 20})),
    ),
    st.builds(
        lambda a, b: {
            "type": "tier",
            "thresholds": [{"tier": "A", "min_score": a + b + 1}, {"tier": "B", "min_score": a}],
            "default_tier": "C",
        },
        st.integers(-20, 40),
        st.integers(0, 20),
    ),
    st.builds(
        lambda rules, team: {
            "type": "route",
            "fallback_owner": "queue",
            "team": team,
            "rules": [
                {"id": f"t{i}", "when": c, **({"owner": o} if isinstance(o, str) else {"team": o})}
                for i, (c, o) in enumerate(rules)
            ],
        },
        st.lists(st.tuples(conditions, st.one_of(_owners, _members)), max_size=2),
        st.one_of(st.just([]), _members),
    ),
    st.sampled_from(
        [
            {"type": "action", "action": "crm_update"},
            {"type": "action", "action": "webhook_notify"},
            {"type": "action", "action": "add_tag", "tag": "t"},
            {"type": "action", "action": "log", "message": "m"},
            {"type": "action", "action": "create_task", "title": "call"},
            {"type": "agent", "agent_id": "agt_0a"},
            {"type": "agent", "agent_id": "agt_0b", "event_type": "lead.created"},
        ]
    ),
)
_pause_steps = st.sampled_from(
    [
        {"type": "wait", "hours": 1},
        {"type": "approval"},
        {"type": "approval", "on_timeout": "approve"},
        {"type": "approval", "on_reject": [{"type": "action", "action": "add_tag", "tag": "rejected"}]},
    ]
)


def _steps(leaves: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.recursive(
        st.lists(leaves, min_size=1, max_size=4),
        lambda inner: st.lists(
            st.one_of(
                leaves,
                st.builds(
                    lambda arms, otherwise: {
                        "type": "branch",
                        "arms": [{"when": c, "steps": s} for c, s in arms],
                        "otherwise": otherwise,
                    },
                    st.lists(st.tuples(conditions, inner), min_size=1, max_size=2),
                    st.one_of(st.just([]), inner),
                ),
            ),
            min_size=1,
            max_size=4,
        ),
        max_leaves=4,
    )


steps = _steps(_leaf_steps)
steps_that_may_pause = _steps(st.one_of(_leaf_steps, _pause_steps, _pause_steps))


def definition_of(workflow_steps: list[dict[str, Any]]) -> WorkflowDefinition:
    """The definition, or the example is discarded: a route after a pause is refused by design."""
    try:
        return WorkflowDefinition.model_validate(
            {"trigger": {"event_types": ["lead.created"]}, "steps": workflow_steps}
        )
    except ValidationError:
        assume(False)
        raise


def _event(body: dict[str, Any]) -> dict[str, Any]:
    return {
        **body,
        "event_id": "e1",
        "org_id": "o",
        "event_type": "lead.created",
        "occurred_at_ms": 1,
        "lead": {"lead_id": "lead-1", "email": "a@acme.io"},
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workflow_steps=steps_that_may_pause, bodies=st.lists(events, min_size=1, max_size=4))
def test_compiled_workflow_matches_reference(
    workflow_steps: list[dict[str, Any]], bodies: list[dict[str, Any]]
) -> None:
    definition = definition_of(workflow_steps)
    compiled = compile_workflow("wf", 1, definition)
    compiled_state, reference_state = RoutingState(), RoutingState()
    outcomes = []
    for body in bodies:
        event = _event(body)
        execution = compiled.evaluate(event, compiled_state)
        expected = run_reference(definition, event, reference_state)
        assert execution.status.value == expected["status"]
        assert (execution.score, execution.score_breakdown, execution.tier, execution.owner) == (
            expected["score"],
            expected["breakdown"],
            expected["tier"],
            expected["owner"],
        )
        assert (execution.actions, execution.logs) == (expected["actions"], expected["logs"])
        assert [c.step for c in execution.crm_commands] == expected["crm"]
        assert [(c.step, c.agent_id, c.lead) for c in execution.agent_calls] == expected["agent_calls"]
        outcomes.append((execution.execution_id, execution.status, execution.tier, execution.owner))
    rerun_state = RoutingState()
    rerun = [compiled.evaluate(_event(body), rerun_state) for body in bodies]
    assert [(e.execution_id, e.status, e.tier, e.owner) for e in rerun] == outcomes, "evaluation is deterministic"


_event_types = st.lists(st.sampled_from([t.value for t in EventType]), min_size=1, max_size=3, unique=True)
_triggers = st.fixed_dictionaries({"event_types": _event_types}, optional={"condition": conditions})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(triggers=st.lists(_triggers, max_size=5), body=events, event_type=st.sampled_from([t.value for t in EventType]))
def test_an_orgs_triggers_compiled_together_answer_as_each_workflow(
    triggers: list[dict[str, Any]], body: dict[str, Any], event_type: str
) -> None:
    workflows = [
        compile_workflow(
            f"wf-{n}",
            1,
            WorkflowDefinition.model_validate(
                {"trigger": trigger, "steps": [{"type": "action", "action": "add_tag", "tag": "t"}]}
            ),
        )
        for n, trigger in enumerate(triggers)
    ]
    event = {**_event(body), "event_type": event_type}
    expected = tuple(workflow.triggers(event) for workflow in workflows)
    compiled = compile_triggers(workflows)
    if event_type in compiled:
        assert compiled[event_type](event) == expected
    else:
        assert not any(expected), "an event type no workflow takes has no function"
