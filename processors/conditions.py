"""Compiles conditions into plain closures, once per workflow version.

The hot path calls these per event, so every decision that depends only on the definition (which
operator, which path, which constant) is taken here, not at evaluation time. A value of the wrong
type never raises: the comparison is simply false.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from processors.free_mail import FREE_MAIL, FREE_MAIL_DOMAINS, email_domain
from processors.model import AllOf, AnyOf, Condition, FieldCondition, NotOf, Operator, compile_regex

Context = Mapping[str, Any]
Predicate = Callable[[Context], bool]
Getter = Callable[[Context], Any]

_MISSING: Any = None


def compile_getter(path: str) -> Getter:
    """A reader for a dotted path; missing keys and non-mapping parents read as None."""
    parts = tuple(path.split("."))
    if len(parts) == 1:
        (key,) = parts

        def get1(ctx: Context) -> Any:
            return ctx.get(key)

        return get1
    if len(parts) == 2:
        first, second = parts

        def get2(ctx: Context) -> Any:
            """The hot path of most conditions (`lead.x`): no type check when the parent is a
            mapping, which it nearly always is; exceptions cost nothing until raised."""
            try:
                return ctx[first].get(second)
            except (KeyError, AttributeError, TypeError):
                return _MISSING

        return get2

    def get_n(ctx: Context) -> Any:
        value: Any = ctx
        for part in parts:
            if not isinstance(value, Mapping):
                return _MISSING
            value = value.get(part)
        return value

    return get_n


_NUMBER_TYPES = (int, float)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ordering(get: Getter, constant: Any, compare: Callable[[Any, Any], bool]) -> Predicate:
    """Numbers compare with numbers and strings with strings; anything else is false. The numeric
    check is inlined (`type(...) in`, which also excludes bools) because it runs for every rule."""
    if _is_number(constant):

        def numeric(ctx: Context) -> bool:
            value = get(ctx)
            return type(value) in _NUMBER_TYPES and compare(value, constant)

        return numeric

    def textual(ctx: Context) -> bool:
        value = get(ctx)
        return isinstance(value, str) and isinstance(constant, str) and compare(value, constant)

    return textual


def _text(get: Getter, test: Callable[[str], bool]) -> Predicate:
    def predicate(ctx: Context) -> bool:
        value = get(ctx)
        return isinstance(value, str) and test(value)

    return predicate


def _compile_field(cond: FieldCondition) -> Predicate:
    get = compile_getter(cond.field)
    op, constant = cond.op, cond.value
    if op is Operator.EQ:
        return lambda ctx: bool(get(ctx) == constant)
    if op is Operator.NEQ:
        return lambda ctx: bool(get(ctx) != constant)
    if op in (Operator.IN, Operator.NOT_IN):
        hashable = all(isinstance(item, str | int | float | bool) for item in constant)
        members: Any = frozenset(constant) if hashable else tuple(constant)
        if op is Operator.IN:

            def member(ctx: Context) -> bool:
                try:
                    return get(ctx) in members
                except TypeError:
                    return False

            return member
        return lambda ctx: not _member(get(ctx), members)
    if op is Operator.GT:
        return _ordering(get, constant, operator.gt)
    if op is Operator.GTE:
        return _ordering(get, constant, operator.ge)
    if op is Operator.LT:
        return _ordering(get, constant, operator.lt)
    if op is Operator.LTE:
        return _ordering(get, constant, operator.le)
    if op is Operator.EXISTS:
        return lambda ctx: get(ctx) not in (None, "")
    if op is Operator.NOT_EXISTS:
        return lambda ctx: get(ctx) in (None, "")
    if op is Operator.BETWEEN:
        low, high = constant
        at_least, at_most = (
            _ordering(get, low, operator.ge),
            _ordering(get, high, operator.le),
        )
        return lambda ctx: at_least(ctx) and at_most(ctx)
    if op in (Operator.CHANGED, Operator.CHANGED_TO, Operator.CHANGED_FROM):
        return _compile_change(cond.field, get, op, constant)
    return _compile_text_operator(get, op, constant)


def as_text(value: Any) -> str:
    """How a value compares with the previous values an event carries (`previous` is string-valued)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _compile_change(path: str, get: Getter, op: Operator, constant: Any) -> Predicate:
    """`changed*` compare the current value with `previous[path]`, which a `lead.updated` producer sends
    for the fields it changed. A field absent from `previous` did not change."""

    def before(ctx: Context) -> str | None:
        previous = ctx.get("previous")
        if not isinstance(previous, dict) or path not in previous:
            return None
        value = previous[path]
        return value if isinstance(value, str) else as_text(value)

    def changed(ctx: Context) -> bool:
        old = before(ctx)
        return old is not None and old != as_text(get(ctx))

    if op is Operator.CHANGED:
        return changed
    target = as_text(constant)
    if op is Operator.CHANGED_TO:
        return lambda ctx: changed(ctx) and as_text(get(ctx)) == target
    return lambda ctx: changed(ctx) and before(ctx) == target


def _compile_text_operator(get: Getter, op: Operator, constant: Any) -> Predicate:
    """String operators are case-insensitive, as CRM users expect of 'contains'; a regex is taken as
    written (use `(?i)` for case-insensitive)."""
    if op is Operator.REGEX:
        search = compile_regex(constant).search
        return _text(get, lambda v: search(v) is not None)
    if op is Operator.IS_EMAIL_DOMAIN:
        domains = FREE_MAIL_DOMAINS if constant == FREE_MAIL else frozenset(d.lower().lstrip("@") for d in constant)
        return _text(get, lambda v: email_domain(v) in domains)
    needle = str(constant).lower()
    if op is Operator.CONTAINS:

        def contains(ctx: Context) -> bool:
            value = get(ctx)
            return isinstance(value, str) and needle in value.lower()

        return contains
    if op is Operator.NOT_CONTAINS:
        return _text(get, lambda v: needle not in v.lower())
    if op is Operator.STARTS_WITH:
        return _text(get, lambda v: v.lower().startswith(needle))
    if op is Operator.ENDS_WITH:

        def ends_with(ctx: Context) -> bool:
            value = get(ctx)
            return isinstance(value, str) and value.lower().endswith(needle)

        return ends_with
    raise ValueError(f"unsupported operator {op!r}")


def _member(value: Any, members: Any) -> bool:
    try:
        return value in members
    except TypeError:
        return False


def compile_condition(cond: Condition) -> Predicate:
    """One generated Python function for the whole condition tree (see `_Generator`); the closure
    composition below stands in where a tree is too deep for Python's parser."""
    try:
        return _Generator().function(cond)
    except (SyntaxError, RecursionError, MemoryError):
        return _compose(cond)


def compile_conditions(conds: Sequence[Condition | bool]) -> Callable[[Context], tuple[bool, ...]]:
    """One generated function answering several conditions at once, in order (a bool stands for
    itself): a score step tests every rule, and one call that reads each parent mapping once costs
    about half as much as a call per rule."""
    try:
        return _Generator().tuple_function(conds)
    except (SyntaxError, RecursionError, MemoryError):
        predicates = tuple(_constant(cond) if isinstance(cond, bool) else compile_condition(cond) for cond in conds)
        return lambda ctx: tuple([predicate(ctx) for predicate in predicates])


def _constant(answer: bool) -> Predicate:
    return lambda _: answer


def _compose(cond: Condition) -> Predicate:
    if isinstance(cond, FieldCondition):
        return _compile_field(cond)
    if isinstance(cond, AllOf):
        return _all_of(tuple(_compose(c) for c in cond.all))
    if isinstance(cond, AnyOf):
        return _any_of(tuple(_compose(c) for c in cond.any))
    if isinstance(cond, NotOf):
        inner = _compose(cond.not_)
        return lambda ctx: not inner(ctx)
    raise TypeError(f"not a condition: {cond!r}")


_SCALARS = frozenset({str, int, float, bool, type(None)})


class _Generator:
    """Writes a condition tree as one Python function: `and`/`or`/`not` for the groups, and the
    common leaves (eq, neq, in, numeric comparisons, exists, contains, starts/ends_with) inline, each
    field read once per leaf from its parent mapping fetched once per call. Other leaves call their
    compiled closure. That halves the cost of a typical condition against composed closures, whose
    every level is a Python call.

    No text from the definition reaches the source: field names, constants and closures are bound
    by generated names (`k0`, `c1`, `p2`) in the function's namespace. A leaf behaves exactly like
    its closure, which is what the property tests hold it to.
    """

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {
            "_SCALARS": _SCALARS,
            "_NUMBERS": _NUMBER_TYPES,
            "_EMPTY": {},
            "_Mapping": Mapping,
        }
        self.parents: dict[str, str] = {}
        self.counter = 0

    def function(self, cond: Condition) -> Predicate:
        predicate: Predicate = self._define(self.expression(cond))
        return predicate

    def tuple_function(self, conds: Sequence[Condition | bool]) -> Callable[[Context], tuple[bool, ...]]:
        answers: Callable[[Context], tuple[bool, ...]] = self._define(
            "(" + "".join(f"{cond if isinstance(cond, bool) else self.expression(cond)}, " for cond in conds) + ")"
        )
        return answers

    def _define(self, body: str) -> Any:
        prologue = "".join(
            f"    {name} = {self.parent_of(path)}.get({self.bind(path.rsplit('.', 1)[-1])})\n"
            f"    if type({name}) is not dict:\n"
            f"        {name} = {name} if isinstance({name}, _Mapping) else _EMPTY\n"
            for path, name in self.parents.items()
        )
        source = f"def generated(ctx):\n{prologue}    return {body}\n"
        exec(compile(source, "<condition>", "exec"), self.namespace)  # only generated names: see the class doc
        return self.namespace["generated"]

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def bind(self, value: Any, prefix: str = "k") -> str:
        name = self.name(prefix)
        self.namespace[name] = value
        return name

    def expression(self, cond: Condition) -> str:
        if isinstance(cond, AllOf):
            return "(" + " and ".join(self.expression(c) for c in cond.all) + ")"
        if isinstance(cond, AnyOf):
            return "(" + " or ".join(self.expression(c) for c in cond.any) + ")"
        if isinstance(cond, NotOf):
            return f"(not {self.expression(cond.not_)})"
        if isinstance(cond, FieldCondition):
            return self.leaf(cond)
        raise TypeError(f"not a condition: {cond!r}")

    def read(self, path: str) -> str:
        """An expression reading the field, as `compile_getter` would: each parent mapping (`lead`,
        `lead.attributes`) is fetched once per call, a missing or non-mapping one reading as empty."""
        parent, _, key = path.rpartition(".")
        return f"{self.parent(parent) if parent else 'ctx'}.get({self.bind(key)})"

    def parent(self, path: str) -> str:
        """The local holding the mapping at `path`; its own parents are registered first, so the
        prologue assigns them in order."""
        name = self.parents.get(path)
        if name is None:
            if "." in path:
                self.parent(path.rsplit(".", 1)[0])
            name = self.parents[path] = f"parent{len(self.parents)}"
        return name

    def parent_of(self, path: str) -> str:
        return self.parents[path.rsplit(".", 1)[0]] if "." in path else "ctx"

    def leaf(self, cond: FieldCondition) -> str:
        op, constant = cond.op, cond.value
        value, v = self.read(cond.field), self.name("v")
        if op is Operator.EQ:
            return f"({value} == {self.bind(constant, 'c')})"
        if op is Operator.NEQ:
            return f"({value} != {self.bind(constant, 'c')})"
        if op is Operator.IN and all(isinstance(item, str | int | float | bool) for item in constant):
            members = self.bind(frozenset(constant), "c")
            return f"({v} in {members} if type({v} := {value}) in _SCALARS else {self.closure(cond)})"
        comparisons = {Operator.GT: ">", Operator.GTE: ">=", Operator.LT: "<", Operator.LTE: "<="}
        if op in comparisons and _is_number(constant):
            return f"(type({v} := {value}) in _NUMBERS and {v} {comparisons[op]} {self.bind(constant, 'c')})"
        if op is Operator.EXISTS:
            return f"({value} not in (None, ''))"
        if op is Operator.NOT_EXISTS:
            return f"({value} in (None, ''))"
        needle = self.bind(str(constant).lower(), "c") if constant is not None else ""
        if op is Operator.CONTAINS:
            return f"(isinstance({v} := {value}, str) and {needle} in {v}.lower())"
        if op is Operator.STARTS_WITH:
            return f"(isinstance({v} := {value}, str) and {v}.lower().startswith({needle}))"
        if op is Operator.ENDS_WITH:
            return f"(isinstance({v} := {value}, str) and {v}.lower().endswith({needle}))"
        return self.closure(cond)

    def closure(self, cond: FieldCondition) -> str:
        return f"{self.bind(_compile_field(cond), 'p')}(ctx)"


def _all_of(parts: tuple[Predicate, ...]) -> Predicate:
    """Short-circuits like `and`; small groups avoid a generator per call on the hot path."""
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        return lambda ctx: first(ctx) and second(ctx)

    def all_of(ctx: Context) -> bool:
        for part in parts:  # noqa: SIM110 - a loop, not all(genexpr): no generator per call
            if not part(ctx):
                return False
        return True

    return all_of


def _any_of(parts: tuple[Predicate, ...]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        return lambda ctx: first(ctx) or second(ctx)

    def any_of(ctx: Context) -> bool:
        for part in parts:  # noqa: SIM110 - a loop, not any(genexpr): no generator per call
            if part(ctx):
                return True
        return False

    return any_of


def describe(cond: Condition) -> str:
    """A compact human-readable form, used in routing reasons and explanations."""
    if isinstance(cond, FieldCondition):
        if cond.value is None:
            return f"{cond.field} {cond.op.value}"
        return f"{cond.field} {cond.op.value} {cond.value!r}"
    if isinstance(cond, AllOf):
        return "(" + " and ".join(describe(c) for c in cond.all) + ")"
    if isinstance(cond, NotOf):
        return f"not {describe(cond.not_)}"
    return "(" + " or ".join(describe(c) for c in cond.any) + ")"
