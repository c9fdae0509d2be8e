"""A straightforward interpreter of conditions that says why each one held or not.

It serves two purposes: traces for `POST /workflows/{id}/test`, where a person needs to see every
comparison, including type mismatches, and the reference semantics that the compiled closures in
`conditions.py` are property-tested against. It is deliberately plain: no closures, no caching.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from processors.conditions import as_text
from processors.free_mail import FREE_MAIL, FREE_MAIL_DOMAINS, email_domain
from processors.model import AllOf, AnyOf, Condition, FieldCondition, NotOf, Operator, compile_regex

Explanation = dict[str, Any]


def read(ctx: Mapping[str, Any], path: str) -> Any:
    value: Any = ctx
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def explain(cond: Condition, ctx: Mapping[str, Any]) -> Explanation:
    if isinstance(cond, AllOf):
        parts = [explain(c, ctx) for c in cond.all]
        return {"all": parts, "result": all(p["result"] for p in parts)}
    if isinstance(cond, AnyOf):
        parts = [explain(c, ctx) for c in cond.any]
        return {"any": parts, "result": any(p["result"] for p in parts)}
    if isinstance(cond, NotOf):
        inner = explain(cond.not_, ctx)
        return {"not": inner, "result": not inner["result"]}
    return _explain_field(cond, ctx)


def holds(cond: Condition, ctx: Mapping[str, Any]) -> bool:
    return bool(explain(cond, ctx)["result"])


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _comparable(actual: Any, constant: Any) -> bool:
    return (_number(actual) and _number(constant)) or (isinstance(actual, str) and isinstance(constant, str))


def _kind(value: Any) -> str:
    return "missing" if value is None else type(value).__name__


def _explain_field(cond: FieldCondition, ctx: Mapping[str, Any]) -> Explanation:
    actual = read(ctx, cond.field)
    result, note = _evaluate(cond, actual, ctx)
    explanation: Explanation = {"field": cond.field, "op": cond.op.value, "actual": actual, "result": result}
    if cond.value is not None:
        explanation["value"] = cond.value
    if note:
        explanation["note"] = note
    return explanation


def _evaluate(cond: FieldCondition, actual: Any, ctx: Mapping[str, Any]) -> tuple[bool, str]:
    op, constant = cond.op, cond.value
    if op is Operator.EQ:
        return actual == constant, ""
    if op is Operator.NEQ:
        return actual != constant, ""
    if op in (Operator.IN, Operator.NOT_IN):
        try:
            member = actual in constant
        except TypeError:
            return op is Operator.NOT_IN, f"type mismatch: {_kind(actual)} cannot be looked up in a list"
        return (member if op is Operator.IN else not member), ""
    if op in (Operator.GT, Operator.GTE, Operator.LT, Operator.LTE):
        if not _comparable(actual, constant):
            return False, f"type mismatch: {_kind(actual)} compared with {_kind(constant)}"
        return {
            Operator.GT: actual > constant,
            Operator.GTE: actual >= constant,
            Operator.LT: actual < constant,
            Operator.LTE: actual <= constant,
        }[op], ""
    if op is Operator.BETWEEN:
        low, high = constant
        if not _comparable(actual, low):
            return False, f"type mismatch: {_kind(actual)} compared with {_kind(low)}"
        return low <= actual <= high, ""
    if op is Operator.EXISTS:
        return actual not in (None, ""), ""
    if op is Operator.NOT_EXISTS:
        return actual in (None, ""), ""
    if op in (Operator.CHANGED, Operator.CHANGED_TO, Operator.CHANGED_FROM):
        return _evaluate_change(cond, actual, ctx)
    if not isinstance(actual, str):
        return False, f"type mismatch: {op.value} needs text, got {_kind(actual)}"
    if op is Operator.REGEX:
        return compile_regex(constant).search(actual) is not None, ""
    if op is Operator.IS_EMAIL_DOMAIN:
        domains = FREE_MAIL_DOMAINS if constant == FREE_MAIL else {d.lower().lstrip("@") for d in constant}
        return email_domain(actual) in domains, ""
    text, needle = actual.lower(), str(constant).lower()
    return {
        Operator.CONTAINS: needle in text,
        Operator.NOT_CONTAINS: needle not in text,
        Operator.STARTS_WITH: text.startswith(needle),
        Operator.ENDS_WITH: text.endswith(needle),
    }[op], ""


def _evaluate_change(cond: FieldCondition, actual: Any, ctx: Mapping[str, Any]) -> tuple[bool, str]:
    previous = ctx.get("previous")
    if not isinstance(previous, Mapping) or cond.field not in previous:
        return False, "no previous value on the event: unchanged"
    before = previous[cond.field]
    before_text = before if isinstance(before, str) else as_text(before)
    changed = before_text != as_text(actual)
    if cond.op is Operator.CHANGED:
        return changed, f"was {before_text!r}"
    if cond.op is Operator.CHANGED_TO:
        return changed and as_text(actual) == as_text(cond.value), f"was {before_text!r}"
    return changed and before_text == as_text(cond.value), f"was {before_text!r}"
