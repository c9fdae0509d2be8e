"""Loads and saves the `RoutingState` a batch needs, with one pipeline each way.

Round-robin pointers are cached in memory: while this worker owns an org's partition it is the only
writer of that org's pointers, so the cache is authoritative until the next rebalance, when it is
dropped and re-read from Redis. Recorded lead owners are always read (one HMGET per org per batch),
because a replay or a `lead.updated` must find them. Everything is written as absolute values, so
saving the same batch twice (a replay) leaves the same state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import redis

from processors.compiler import CompiledWorkflow
from processors.events import lead_id_of
from processors.routing import PointerKey, RoutingState
from streams import state_keys


class RoutingStateStore:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._pointers: dict[PointerKey, int] = {}
        self._loaded: set[tuple[str, str]] = set()

    def forget(self) -> None:
        """Called on every rebalance: another worker may have advanced these pointers meanwhile."""
        self._pointers.clear()
        self._loaded.clear()

    def load(
        self, events: Iterable[Mapping[str, Any]], workflows: Mapping[str, tuple[CompiledWorkflow, ...]]
    ) -> RoutingState:
        rotating = {org_id: [w.workflow_id for w in compiled if w.uses_round_robin]
                    for org_id, compiled in workflows.items()}
        leads: dict[str, set[str]] = defaultdict(set)
        for event in events:
            if rotating.get(event["org_id"]):
                leads[event["org_id"]].add(lead_id_of(event))
        unloaded = sorted({(org_id, wf) for org_id, wfs in rotating.items() for wf in wfs} - self._loaded)
        state = RoutingState(pointers=self._pointers)
        if not leads:
            return state
        lead_lists = {org_id: sorted(ids) for org_id, ids in leads.items()}
        with self._redis.pipeline(transaction=False) as pipe:
            for org_id, workflow_id in unloaded:
                pipe.hgetall(state_keys.round_robin_pointers(org_id, workflow_id))
            for org_id, lead_ids in lead_lists.items():
                pipe.hmget(state_keys.lead_owners(org_id), lead_ids)
            replies = pipe.execute()
        for (org_id, workflow_id), pointers in zip(unloaded, replies, strict=False):
            for pool, value in pointers.items():
                self._pointers[(org_id, workflow_id, pool.decode())] = int(value)
            self._loaded.add((org_id, workflow_id))
        for (org_id, lead_ids), owners in zip(lead_lists.items(), replies[len(unloaded):], strict=True):
            for lead_id, recorded in zip(lead_ids, owners, strict=True):
                if recorded is not None:
                    for workflow_id, owner in orjson.loads(recorded).items():
                        state.assignments[(org_id, workflow_id, lead_id)] = owner
        return state

    def save(self, state: RoutingState) -> None:
        if not state.changed_pointers and not state.new_assignments:
            return
        pointer_updates: dict[str, dict[str, int]] = defaultdict(dict)
        for org_id, workflow_id, pool in state.changed_pointers:
            pointer_updates[state_keys.round_robin_pointers(org_id, workflow_id)][pool] = (
                state.pointers[(org_id, workflow_id, pool)])
        touched_leads = {(org_id, lead_id) for org_id, _, lead_id in state.new_assignments}
        owners: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
        for (org_id, workflow_id, lead_id), owner in state.assignments.items():
            if (org_id, lead_id) in touched_leads:
                owners[(org_id, lead_id)][workflow_id] = owner
        owner_updates: dict[str, dict[str, bytes]] = defaultdict(dict)
        for (org_id, lead_id), by_workflow in owners.items():
            owner_updates[state_keys.lead_owners(org_id)][lead_id] = orjson.dumps(by_workflow)
        with self._redis.pipeline(transaction=False) as pipe:
            for key, mapping in [*pointer_updates.items(), *owner_updates.items()]:
                pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
            pipe.execute()
