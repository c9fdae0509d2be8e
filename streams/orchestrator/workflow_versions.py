"""Compiled workflow versions by number: a paused execution resumes on the version it started with,
even after a newer one was activated. A version is frozen once it ran, so what is compiled once
stays right; the cache only bounds memory."""

from __future__ import annotations

from collections import OrderedDict

from processors.compiler import CompiledWorkflow, compile_workflow
from processors.model import WorkflowDefinition
from streams.state.control_plane import ControlPlaneReader

_CACHED = 1024


class UnknownVersion(LookupError):
    pass


class WorkflowVersions:
    def __init__(self, reader: ControlPlaneReader) -> None:
        self._reader = reader
        self._compiled: OrderedDict[tuple[str, str, int], CompiledWorkflow] = OrderedDict()

    def get(self, org_id: str, workflow_id: str, version: int) -> CompiledWorkflow:
        key = (org_id, workflow_id, version)
        compiled = self._compiled.get(key)
        if compiled is not None:
            self._compiled.move_to_end(key)
            return compiled
        definition = self._reader.workflow_version(org_id, workflow_id, version)
        if definition is None:
            raise UnknownVersion(f"workflow {workflow_id} of org {org_id} has no version {version}")
        compiled = compile_workflow(workflow_id, version, WorkflowDefinition.model_validate(definition))
        self._compiled[key] = compiled
        if len(self._compiled) > _CACHED:
            self._compiled.popitem(last=False)
        return compiled
