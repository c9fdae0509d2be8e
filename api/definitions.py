"""Definitions offered to be stored (workflows, agent templates): validated with the rules only new
definitions meet, normalized with their defaults, and refused with the path of each problem inside
the request body's `definition`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from api.problems import invalid, validation_errors
from processors.agent_templates import AgentTemplateDefinition
from processors.model import WorkflowDefinition, offered


def validated(
    model: type[BaseModel], definition: dict[str, Any], schedule_floor_s: int, what: str, at: str = "$.definition"
) -> Any:
    """The validated model; a 422 naming each field under `at` otherwise."""
    try:
        return model.model_validate(definition, context=offered(schedule_floor_s))
    except ValidationError as exc:
        errors = validation_errors(definition, exc.errors(include_url=False))
        for error in errors:
            error["field"] = at + error["field"][1:]
        raise invalid(errors, f"the {what} is invalid") from None


def workflow_definition(definition: dict[str, Any], schedule_floor_s: int) -> dict[str, Any]:
    """A workflow's definition as stored."""
    model: WorkflowDefinition = validated(WorkflowDefinition, definition, schedule_floor_s, "workflow definition")
    return model.model_dump(mode="json", exclude_none=True)


def template_definition(definition: dict[str, Any], schedule_floor_s: int) -> dict[str, Any]:
    """An agent template's definition as stored; the workflow it deploys as is held to every bound
    a workflow offered directly is held to."""
    template: AgentTemplateDefinition = validated(
        AgentTemplateDefinition, definition, schedule_floor_s, "agent template definition"
    )
    validated(
        WorkflowDefinition,
        template.workflow().model_dump(mode="json", exclude_none=True),
        schedule_floor_s,
        "agent template's policy",
        at="$.definition.policy",
    )
    return template.model_dump(mode="json", exclude_none=True)
