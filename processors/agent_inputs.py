"""What an agent accepts: the lead of a call, checked against the JSON Schema of the template version
the agent runs. The API checks the calls it is sent (execute, inference, score_lead, a signed inbound
hook) and the workers the calls `agent` steps make, through these functions, so both refuse the same
leads and name the same fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing.exceptions import Unresolvable


class UnusableSchema(ValueError):
    """The schema refers to something that cannot be resolved: no lead can be checked against it."""


def input_validator(schema: Mapping[str, Any]) -> Draft202012Validator:
    """A validator for a template's input schema (valid: templates are checked when offered). A
    worker keeps one per agent rather than building it per call."""
    return Draft202012Validator(schema, format_checker=FormatChecker())


def input_problems(validator: Draft202012Validator, lead: Mapping[str, Any]) -> dict[str, str]:
    """Each field of the lead the schema refuses (`$.lead.…`, a missing required field by its own
    path) with why, in field order; empty when the lead meets the schema."""
    problems: dict[str, str] = {}
    try:
        found = list(validator.iter_errors(lead))
    except Unresolvable as exc:
        raise UnusableSchema(f"it refers to {exc}") from None
    for error in found:
        path = "$.lead" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            for missing in error.validator_value:
                if missing not in error.instance:
                    problems.setdefault(f"{path}.{missing}", f"'{missing}' is a required property")
        else:
            problems.setdefault(path, error.message)
    return dict(sorted(problems.items()))


def as_sent(lead: Mapping[str, Any]) -> dict[str, Any]:
    """A lead as an event carries it, read back as a caller would have sent it: the event contract
    fills every field it lacks with null (and `attributes` with {}), which a schema would read as a
    value of the wrong type rather than as a missing field. Attribute values are text in an event."""
    return {
        name: value for name, value in lead.items() if value is not None and not (name == "attributes" and value == {})
    }
