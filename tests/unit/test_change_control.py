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
    assert decision_refusal("usr_b", ["usr_a", None]) is None
    assert decision_refusal("usr_a", ["usr_a", "usr_c"]) is not None, "the requester"
    assert decision_refusal("usr_c", ["usr_a", "usr_c"]) is not None, "the version's author"
    assert decision_refusal(None, ["usr_a"]) is not None, "a key is no person"
