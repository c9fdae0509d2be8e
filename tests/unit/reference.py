"""A deliberately naive interpreter of condition JSON, the oracle for the compiled evaluator."""

from __future__ import annotations

from typing import Any


def lookup(event: dict[str, Any], path: str) -> Any:
    value: Any = event
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def holds(cond: dict[str, Any], event: dict[str, Any]) -> bool:
    if "all" in cond:
        return all(holds(c, event) for c in cond["all"])
    if "any" in cond:
        return any(holds(c, event) for c in cond["any"])
    value, op, want = lookup(event, cond["field"]), cond["op"], cond.get("value")
    if op == "eq":
        return bool(value == want)
    if op == "neq":
        return bool(value != want)
    if op in ("in", "not_in"):
        try:
            member = value in want
        except TypeError:
            member = False
        return member if op == "in" else not member
    if op in ("gt", "gte", "lt", "lte"):
        comparable = (number(value) and number(want)) or (isinstance(value, str) and isinstance(want, str))
        if not comparable:
            return False
        return {"gt": value > want, "gte": value >= want, "lt": value < want, "lte": value <= want}[op]
    if op == "exists":
        return value is not None and value != ""
    if op == "not_exists":
        return value is None or value == ""
    if not isinstance(value, str):
        return False
    text, needle = value.lower(), str(want).lower()
    return {
        "contains": needle in text,
        "not_contains": needle not in text,
        "starts_with": text.startswith(needle),
        "ends_with": text.endswith(needle),
    }[op]
