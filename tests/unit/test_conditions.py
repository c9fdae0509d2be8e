from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from processors.conditions import compile_condition, compile_conditions, describe
from processors.explain import explain, holds
from processors.model import Condition

_condition = TypeAdapter(Condition)


def check(cond: dict[str, Any], event: dict[str, Any]) -> bool:
    return compile_condition(_condition.validate_python(cond))(event)


LEAD = {
    "lead": {
        "country": "US",
        "employees": 250,
        "title": "VP of Sales",
        "email": "a@b.io",
        "attributes": {"plan": "pro"},
    },
    "score": 42,
}


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        ({"field": "lead.country", "op": "eq", "value": "US"}, True),
        ({"field": "lead.country", "op": "neq", "value": "US"}, False),
        ({"field": "lead.country", "op": "in", "value": ["DE", "US"]}, True),
        ({"field": "lead.country", "op": "not_in", "value": ["DE", "US"]}, False),
        ({"field": "lead.employees", "op": "gt", "value": 250}, False),
        ({"field": "lead.employees", "op": "gte", "value": 250}, True),
        ({"field": "lead.employees", "op": "lt", "value": 251.5}, True),
        ({"field": "lead.employees", "op": "lte", "value": 249}, False),
        ({"field": "lead.title", "op": "contains", "value": "vp"}, True),
        ({"field": "lead.title", "op": "starts_with", "value": "VP"}, True),
        ({"field": "lead.email", "op": "ends_with", "value": "@B.IO"}, True),
        ({"field": "lead.phone", "op": "exists"}, False),
        ({"field": "lead.phone", "op": "not_exists"}, True),
        ({"field": "lead.attributes.plan", "op": "eq", "value": "pro"}, True),
        ({"field": "score", "op": "gte", "value": 40}, True),
        (
            {
                "all": [
                    {"field": "lead.country", "op": "eq", "value": "US"},
                    {
                        "any": [
                            {"field": "score", "op": "lt", "value": 10},
                            {"field": "lead.employees", "op": "gt", "value": 100},
                        ]
                    },
                ]
            },
            True,
        ),
    ],
)
def test_operators(cond: dict[str, Any], expected: bool) -> None:
    assert check(cond, LEAD) is expected


@pytest.mark.parametrize(
    "cond",
    [
        {"field": "lead.title", "op": "gt", "value": 5},
        {"field": "lead.employees", "op": "contains", "value": "2"},
        {"field": "lead.country.code", "op": "eq", "value": "US"},
        {"field": "lead.attributes", "op": "starts_with", "value": "p"},
    ],
)
def test_type_mismatches_are_false_not_errors(cond: dict[str, Any]) -> None:
    assert check(cond, LEAD) is False


def test_describe_is_readable() -> None:
    cond = _condition.validate_python(
        {"any": [{"field": "a", "op": "exists"}, {"field": "b", "op": "in", "value": [1]}]}
    )
    assert describe(cond) == "(a exists or b in [1])"


# Property: the compiled evaluator agrees with the naive reference interpreter on arbitrary input.

_fields = st.sampled_from(["a", "b", "nested.x", "nested.y", "missing", "nested.deep.z"])
_texts = st.sampled_from(["", "a", "Ab", "abc", "B", "xyz", "ada@gmail.com", "bob@Acme.io", "c@x@acme.io"])
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(-5, 5, allow_nan=False), _texts)
_values = st.one_of(_scalars, st.lists(_scalars, max_size=3), st.dictionaries(st.sampled_from(["x", "z"]), _scalars))
_present = _scalars.filter(lambda v: v is not None)
_OPERATORS = [
    "eq",
    "neq",
    "in",
    "not_in",
    "gt",
    "gte",
    "lt",
    "lte",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "exists",
    "not_exists",
    "between",
    "regex",
    "is_email_domain",
    "changed",
    "changed_to",
    "changed_from",
]


@st.composite
def leaf(draw: st.DrawFn) -> dict[str, Any]:
    op, field = draw(st.sampled_from(_OPERATORS)), draw(_fields)
    if op in ("exists", "not_exists", "changed"):
        return {"field": field, "op": op}
    if op in ("in", "not_in"):
        return {"field": field, "op": op, "value": draw(st.lists(_present, max_size=4))}
    if op == "between":
        pair = draw(
            st.one_of(
                st.lists(st.integers(-5, 5), min_size=2, max_size=2),
                st.lists(st.sampled_from(["a", "b", "x"]), min_size=2, max_size=2),
            )
        )
        return {"field": field, "op": op, "value": sorted(pair)}
    if op == "regex":
        return {
            "field": field,
            "op": op,
            "value": draw(st.sampled_from(["^a", "c$", "(?i)ab", "a.c", "x|y", "(a+)+$"])),
        }
    if op == "is_email_domain":
        return {
            "field": field,
            "op": op,
            "value": draw(st.one_of(st.just("free_mail"), st.just(["acme.io"]), st.just(["@ACME.io", "x.org"]))),
        }
    return {"field": field, "op": op, "value": draw(_present)}


conditions = st.recursive(
    leaf(),
    lambda children: st.one_of(
        st.builds(lambda cs: {"all": cs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda cs: {"any": cs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, children),
    ),
    max_leaves=8,
)
events = st.fixed_dictionaries(
    {
        "a": _values,
        "b": _values,
        "nested": st.one_of(
            _scalars,
            st.fixed_dictionaries(
                {"x": _values, "y": _values, "deep": st.one_of(_scalars, st.fixed_dictionaries({"z": _values}))}
            ),
        ),
    },
    optional={
        "previous": st.dictionaries(_fields, st.one_of(_texts, st.sampled_from(["1", "true", "-2"])), max_size=3)
    },
)


@settings(max_examples=600, deadline=None)
@given(cond=conditions, event=events)
def test_compiled_matches_reference_and_never_raises(cond: dict[str, Any], event: dict[str, Any]) -> None:
    model = _condition.validate_python(cond)
    compiled = compile_condition(model)
    first = compiled(event)
    assert first is holds(model, event)
    assert compiled(event) is first


@settings(max_examples=300, deadline=None)
@given(conds=st.lists(conditions, max_size=4), event=events)
def test_conditions_compiled_together_answer_as_each_alone(conds: list[dict[str, Any]], event: dict[str, Any]) -> None:
    models = [_condition.validate_python(cond) for cond in conds]
    assert compile_conditions(models)(event) == tuple(holds(model, event) for model in models)


def test_explanations_record_type_mismatches() -> None:
    model = _condition.validate_python(
        {
            "all": [
                {"field": "lead.title", "op": "gt", "value": 5},
                {"not": {"field": "lead.country", "op": "eq", "value": "DE"}},
            ]
        }
    )
    explained = explain(model, LEAD)
    assert explained["result"] is False
    assert explained["all"][0]["note"] == "type mismatch: str compared with int"
    assert explained["all"][1] == {
        "not": {"field": "lead.country", "op": "eq", "value": "DE", "actual": "US", "result": False},
        "result": True,
    }


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        ({"field": "lead.email", "op": "is_email_domain", "value": "free_mail"}, False),
        ({"field": "lead.email", "op": "is_email_domain", "value": ["B.IO"]}, True),
        ({"field": "lead.title", "op": "regex", "value": "^VP\\b"}, True),
        ({"field": "lead.title", "op": "regex", "value": "^vp"}, False),
        ({"field": "lead.employees", "op": "between", "value": [250, 251]}, True),
        ({"not": {"field": "lead.country", "op": "eq", "value": "US"}}, False),
        ({"field": "lead.country", "op": "changed"}, True),
        ({"field": "lead.country", "op": "changed_from", "value": "CA"}, True),
        ({"field": "lead.country", "op": "changed_to", "value": "US"}, True),
        ({"field": "lead.employees", "op": "changed"}, False),
        ({"field": "lead.title", "op": "changed"}, False),
    ],
)
def test_new_operators(cond: dict[str, Any], expected: bool) -> None:
    event = {**LEAD, "previous": {"lead.country": "CA", "lead.employees": "250"}}
    assert check(cond, event) is expected


def test_hostile_regex_is_linear_time_and_backreferences_are_refused() -> None:
    hostile = check({"field": "lead.title", "op": "regex", "value": "(a+)+$"}, {"lead": {"title": "a" * 50_000 + "!"}})
    assert hostile is False
    with pytest.raises(ValueError, match="RE2"):
        _condition.validate_python({"field": "x", "op": "regex", "value": "(a)\\1"})


def test_a_condition_too_deep_for_one_generated_function_still_compiles() -> None:
    """Python's parser refuses about 200 nested parentheses; such a tree falls back to composed closures."""
    nested: dict[str, Any] = {"field": "lead.country", "op": "eq", "value": "US"}
    for _ in range(120):
        nested = {"not": {"not": nested}}
    holds = compile_condition(TypeAdapter(Condition).validate_python(nested))
    assert holds({"lead": {"country": "US"}}) is True
    assert holds({"lead": {"country": "DE"}}) is False
