"""Each worker's cache of compiled active workflows, refreshed from the control plane by revision.

A worker checks an org's revision at most every `refresh_s` seconds (one query for all the stale
orgs of a batch) and reloads and recompiles only orgs whose revision moved, so a change made through
the API reaches the workers within about a second without reading every definition again
(streams/state/control_plane.py says why a committed change can never be missed).

A stored definition that no longer compiles (a model change, a hand edit) must not stop the worker
for every org: that workflow is quarantined in the control plane (taken out of the active set, with
the reason, audited) and the rest of its org runs on. Compiled workflows of versions an org no longer
runs are dropped, and shared compilations once no org uses them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from operator import itemgetter
from types import MappingProxyType

import orjson

from processors.compiler import CompiledWorkflow, Triggers, compile_triggers, compile_workflow
from processors.model import WorkflowDefinition
from streams.state.control_plane import ControlPlaneReader

log = logging.getLogger(__name__)


class WorkflowCatalog:
    def __init__(self, reader: ControlPlaneReader, refresh_s: float) -> None:
        self._reader = reader
        self._refresh_s = refresh_s
        self._workflows: dict[str, tuple[CompiledWorkflow, ...]] = {}
        self._watched: dict[str, frozenset[str]] = {}
        self._exiting: dict[str, tuple[CompiledWorkflow, ...]] = {}
        self._reading_model: set[str] = set()
        self._calling_agents: set[str] = set()
        self._revisions: dict[str, int | None] = {}
        self._checked_at: dict[str, float] = {}
        self._compiled: dict[str, dict[tuple[str, int], tuple[tuple[bytes, str], CompiledWorkflow]]] = {}
        """Per org: (workflow id, version) -> ((definition fingerprint, workflow id), compiled)."""
        self._by_definition: dict[bytes, tuple[bytes, CompiledWorkflow]] = {}
        self._triggers: dict[str, Triggers] = {}
        self._trigger_sets: dict[tuple[tuple[frozenset[str], object], ...], Triggers] = {}

    def active_for(self, org_ids: Iterable[str]) -> dict[str, tuple[CompiledWorkflow, ...]]:
        """The compiled active workflows of each org, refreshed where the revision moved."""
        org_ids = set(org_ids)
        now = time.monotonic()
        stale = [o for o in org_ids if now - self._checked_at.get(o, -1e9) >= self._refresh_s]
        if stale:
            self._refresh(stale, now)
        return {org_id: self._workflows.get(org_id, ()) for org_id in org_ids}

    def refreshed(self, org_ids: Iterable[str]) -> dict[str, tuple[CompiledWorkflow, ...]]:
        """`active_for` without waiting out the refresh interval: a run asked for a workflow this
        process does not know yet (activated within the interval, as a just-deployed agent's
        backing workflow is) is checked against PostgreSQL before it is taken for inactive."""
        org_ids = set(org_ids)
        self._refresh(sorted(org_ids), time.monotonic())
        return {org_id: self._workflows.get(org_id, ()) for org_id in org_ids}

    def triggers_of(self, org_id: str) -> Triggers:
        """By event type: which of the org's workflows (as `active_for` last returned them, in that
        order) an event triggers. Orgs with the same workflow definitions share the functions."""
        return self._triggers.get(org_id, _NO_TRIGGERS)

    def watched_fields(self, org_id: str) -> frozenset[str]:
        """The fields any of the org's active workflows compares with a `changed*` condition (as of
        the last `active_for`): what the qualifier must remember per lead."""
        return self._watched.get(org_id, frozenset())

    def exiting(self, org_id: str) -> tuple[CompiledWorkflow, ...]:
        """The org's active workflows with an exit condition (as of the last `active_for`)."""
        return self._exiting.get(org_id, ())

    def reads_model(self, org_id: str) -> bool:
        """Whether any of the org's active workflows reads the learned model (as of the last
        `active_for`): only then does the qualifier look the org's model up."""
        return org_id in self._reading_model

    def calls_agents(self, org_id: str) -> bool:
        """Whether any of the org's active workflows has an `agent` step (as of the last
        `active_for`): only then does the qualifier read the org's agents."""
        return org_id in self._calling_agents

    def _refresh(self, org_ids: list[str], now: float) -> None:
        revisions = self._reader.revisions(org_ids)
        changed = []
        for org_id in org_ids:
            self._checked_at[org_id] = now
            revision = revisions.get(org_id)
            if org_id not in self._revisions or self._revisions[org_id] != revision:
                changed.append((org_id, revision))
        if not changed:
            return
        definitions = self._reader.active_workflows([org_id for org_id, _ in changed])
        for org_id, revision in changed:
            before, now_running = self._compiled.get(org_id, {}), {}
            for workflow_id, version, definition in definitions[org_id]:
                key = (workflow_id, version)
                try:
                    now_running[key] = before.get(key) or self._compile(workflow_id, version, definition)
                except Exception as exc:
                    self._quarantine(org_id, workflow_id, version, exc)
            self._compiled[org_id] = now_running
            # Ordered by definition, then id: orgs with the same definitions list them in the same
            # order, so they share one compiled trigger set.
            ordered = sorted(now_running.values(), key=itemgetter(0))
            self._workflows[org_id] = tuple(workflow for _, workflow in ordered)
            self._watched[org_id] = frozenset().union(*(w.watched_fields for w in self._workflows[org_id]))
            self._exiting[org_id] = tuple(w for w in self._workflows[org_id] if w.exit_condition is not None)
            if any(w.uses_model for w in self._workflows[org_id]):
                self._reading_model.add(org_id)
            else:
                self._reading_model.discard(org_id)
            if any(w.calls_agents for w in self._workflows[org_id]):
                self._calling_agents.add(org_id)
            else:
                self._calling_agents.discard(org_id)
            self._triggers[org_id] = self._trigger_set(self._workflows[org_id])
            self._revisions[org_id] = revision
            log.info("org %s: %d active workflows (revision %s)", org_id, len(self._workflows[org_id]), revision)
        self._forget_unused()

    def _quarantine(self, org_id: str, workflow_id: str, version: int, error: Exception) -> None:
        reason = f"version {version} no longer compiles: {type(error).__name__}: {error}"[:2000]
        log.error("org %s: quarantining workflow %s: %s", org_id, workflow_id, reason)
        self._reader.quarantine_workflow(org_id, workflow_id, version, reason)

    def _forget_unused(self) -> None:
        """Shared compilations and trigger sets no org runs any more, once they outnumber those in use."""
        used = {fingerprint for org in self._compiled.values() for (fingerprint, _), _ in org.values()}
        if len(self._by_definition) > 2 * len(used) + 64:
            self._by_definition = {f: known for f, known in self._by_definition.items() if f in used}
        in_use = {id(triggers) for triggers in self._triggers.values()}
        if len(self._trigger_sets) > 2 * len(in_use) + 64:
            self._trigger_sets = {k: t for k, t in self._trigger_sets.items() if id(t) in in_use}

    def _compile(
        self, workflow_id: str, version: int, definition: dict[str, object]
    ) -> tuple[tuple[bytes, str], CompiledWorkflow]:
        """((definition fingerprint, workflow id), the compiled workflow)."""
        fingerprint, template = self._template(definition)
        return (fingerprint, workflow_id), replace(template, workflow_id=workflow_id, version=version)

    def _trigger_set(self, workflows: tuple[CompiledWorkflow, ...]) -> Triggers:
        """Workflows compiled from one template share its event types and trigger function, which
        identify the set."""
        key = tuple((w.event_types, w.trigger_condition) for w in workflows)
        triggers = self._trigger_sets.get(key)
        if triggers is None:
            triggers = self._trigger_sets[key] = compile_triggers(workflows)
        return triggers

    def _template(self, definition: object) -> tuple[bytes, CompiledWorkflow]:
        """Compiled steps never capture a workflow's id or version, so orgs that share a definition
        (templates are common) share one compilation."""
        fingerprint = orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)
        known = self._by_definition.get(fingerprint)
        if known is None:
            # The stored fingerprint is the one handed out: a thousand orgs keep one copy, not one each.
            known = fingerprint, compile_workflow("", 0, WorkflowDefinition.model_validate(definition))
            self._by_definition[fingerprint] = known
        return known


_NO_TRIGGERS: Triggers = MappingProxyType({})
