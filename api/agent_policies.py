"""What an agent call reads of the versions it is pinned to, parsed once per stored definition.

A template version and a workflow version never change once stored, so the validated template, its
input schema's validator and the compiled policy are the same for every call of an agent. Built per
call they cost more than the decision itself (the input schema's meta-schema check alone took about
7 ms of a `score_lead` call), so they are kept here, keyed by the definition's canonical JSON: a
different definition is a different key, whatever row or version number it came from.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from processors.agent_inputs import input_validator
from processors.agent_templates import AgentTemplateDefinition
from processors.compiler import CompiledWorkflow, compile_workflow
from processors.model import WorkflowDefinition

KEPT = 1024
"""Definitions kept per API process, least recently used dropped first."""


def _key(definition: dict[str, Any]) -> bytes:
    return orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)


def template(definition: dict[str, Any]) -> AgentTemplateDefinition:
    """A stored template version read back (without the offered-only rules, like a stored workflow)."""
    return _template(_key(definition))


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    """The input schema's validator (a template's schema was checked when it was offered)."""
    return _validator(_key(schema))


def policy(workflow_id: str, version: int, definition: dict[str, Any]) -> CompiledWorkflow:
    """An agent's backing workflow version, compiled."""
    return _policy(workflow_id, version, _key(definition))


@lru_cache(maxsize=KEPT)
def _template(definition: bytes) -> AgentTemplateDefinition:
    return AgentTemplateDefinition.model_validate_json(definition)


@lru_cache(maxsize=KEPT)
def _validator(schema: bytes) -> Draft202012Validator:
    return input_validator(orjson.loads(schema))


@lru_cache(maxsize=KEPT)
def _policy(workflow_id: str, version: int, definition: bytes) -> CompiledWorkflow:
    return compile_workflow(workflow_id, version, WorkflowDefinition.model_validate_json(definition))
