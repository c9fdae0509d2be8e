"""Four-eyes rules and the diff a reviewer reads."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from processors.change_control import (
    ProjectPolicy,
    activation_needs_approval,
    decision_refusal,
    definition_diff,
    move_refusal,
    template_change_needs_approval,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text("abc", max_size=3), children, max_size=4),
    max_leaves=20,
)


def _apply(document: Any, changes: list[dict[str, Any]]) -> Any:
    """Replays a diff onto a copy of `document`: removals last and from the end, so indexes hold."""
    root = {"": copy.deepcopy(document)}
    ordered = [c for c in changes if c["op"] != "removed"] + [c for c in reversed(changes) if c["op"] == "removed"]
    for change in ordered:
        parts: list[str | int] = [""]
        for token in change["path"].split("/")[1:]:
            key = token.replace("~1", "/").replace("~0", "~")
            parts.append(int(key) if isinstance(_walk(root, parts), list) else key)
        parent, leaf = _walk(root, parts[:-1]), parts[-1]
        if change["op"] == "removed":
            del parent[leaf]
        elif isinstance(parent, list) and change["op"] == "added":
            parent.append(change["after"])
        else:
            parent[leaf] = change["after"]
    return root[""]


def _walk(document: Any, parts: list[str | int]) -> Any:
    for part in parts:
        document = document[part]
    return document


@given(json_values, json_values)
def test_a_diff_replayed_on_before_gives_after(before: Any, after: Any) -> None:
    changes = [c.as_json() for c in definition_diff(before, after)]
    assert _apply(before, changes) == after


@given(json_values)
def test_no_change_no_diff(document: Any) -> None:
    assert definition_diff(document, copy.deepcopy(document)) == []


def test_a_diff_names_the_leaf_that_changed() -> None:
    before = {"steps": [{"type": "score", "rules": [{"id": "vp", "points": 30}]}]}
    after = {"steps": [{"type": "score", "rules": [{"id": "vp", "points": 40}]}], "trigger": {}}
    changes = [c.as_json() for c in definition_diff(before, after)]
    assert changes == [
        {"path": "/steps/0/rules/0/points", "op": "changed", "before": 30, "after": 40},
        {"path": "/trigger", "op": "added", "before": None, "after": {}},
    ]
    assert [c.op for c in definition_diff({"n": 1}, {"n": True})] == ["changed"], "1 and True differ in JSON"


def test_who_needs_approval_and_who_may_give_it() -> None:
    assert not activation_needs_approval(ProjectPolicy(), by_agent_key=False)
    assert activation_needs_approval(ProjectPolicy(), by_agent_key=True)
    assert activation_needs_approval(ProjectPolicy(workflow_activation_requires_approval=True), by_agent_key=False)
    assert template_change_needs_approval(ProjectPolicy(), by_agent_key=True), "an agent key only proposes"
    assert not template_change_needs_approval(ProjectPolicy(), by_agent_key=False)
    assert template_change_needs_approval(ProjectPolicy(workflow_activation_requires_approval=True), False), (
        "a template version runs as a workflow: a project that reviews workflows reviews it too"
    )
    assert template_change_needs_approval(ProjectPolicy(agent_template_change_requires_approval=True), False)
    assert decision_refusal("usr_b", ["usr_a", None]) is None
    assert decision_refusal("usr_a", ["usr_a", "usr_c"]) is not None, "the requester"
    assert decision_refusal("usr_c", ["usr_a", "usr_c"]) is not None, "the version's author"
    assert decision_refusal(None, ["usr_a"]) is not None, "a key is no person"


def test_a_change_nobody_stands_behind_as_a_person_is_never_approved() -> None:
    """Requested and written through keys that act for nobody, a change has no person to compare
    the decider with: whoever acted through those keys could approve it."""
    assert decision_refusal("usr_a", [None, None]) is not None
    assert decision_refusal("usr_a", []) is not None
    assert decision_refusal("usr_b", [None, "usr_a"]) is None, "a person wrote it: another one may approve"


_GATED = ProjectPolicy(workflow_activation_requires_approval=True)
_moves = st.lists(
    st.one_of(st.tuples(st.just("move"), st.integers(0, 3)), st.sampled_from([("activate", 0), ("deactivate", 0)])),
    max_size=30,
)


@given(st.lists(st.booleans(), min_size=4, max_size=4), st.integers(0, 3), _moves)
def test_no_sequence_of_moves_and_activations_lets_a_version_skip_the_review_of_a_gated_project(
    gated: list[bool], start: int, steps: list[tuple[str, int]]
) -> None:
    """A workflow that was ever in a gated project is reviewed at every later activation, and a gated
    project never holds an active version nobody reviewed (move out, activate, move back in)."""
    policies = [_GATED if g else ProjectPolicy() for g in gated]
    project, active, reviewed, ever_gated = start, False, False, gated[start]
    for step, target in steps:
        if step == "move":
            if move_refusal(policies[project], policies[target], active) is None:
                project = target
                ever_gated |= gated[project]
        elif step == "activate":
            active, reviewed = True, activation_needs_approval(policies[project], by_agent_key=False)
            assert reviewed or not ever_gated, "a workflow that was in a gated project skipped review"
        else:
            active = False
        assert reviewed or not (active and gated[project]), "a gated project holds an unreviewed active version"


def test_moves_between_projects_of_the_same_policy_are_free() -> None:
    for policy in (ProjectPolicy(), _GATED):
        assert move_refusal(policy, policy, active=True) is None
    assert move_refusal(ProjectPolicy(), _GATED, active=False) is None, "inactive: its activation will be reviewed"
