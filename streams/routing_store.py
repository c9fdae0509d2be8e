"""Loads and saves the `RoutingState` a batch needs, with one pipeline each way.

Round-robin pointers are cached in memory: while this worker owns an org's partition it is the only
writer of that org's pointers, so the cache is authoritative until the next rebalance, when it is
dropped and re-read from Redis. Recorded lead owners are always read, because a replay or a
`lead.updated` must find them. Pointers are written as absolute values, not increments, so saving
the same batch twice (a replay) leaves the same state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import redis

from processors.compiler import CompiledWorkflow
from processors.events import lead_id_of
from processors.routing import PointerKey, RoutingState
from streams import state_keys

ASSIGNMENT_TTL_S = 180 * 86_400


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
        leads = sorted({(e["org_id"], lead_id_of(e)) for e in events if rotating.get(e["org_id"])})
        unloaded = sorted({(org_id, wf) for org_id, wfs in rotating.items() for wf in wfs} - self._loaded)
        state = RoutingState(pointers=self._pointers)
        if not leads:
            return state
        with self._redis.pipeline(transaction=False) as pipe:
            for org_id, workflow_id in unloaded:
                pipe.hgetall(state_keys.round_robin_pointers(org_id, workflow_id))
            for org_id, lead_id in leads:
                pipe.hgetall(state_keys.lead_owners(org_id, lead_id))
            replies = pipe.execute()
        for (org_id, workflow_id), pointers in zip(unloaded, replies, strict=False):
            for pool, value in pointers.items():
                self._pointers[(org_id, workflow_id, pool.decode())] = int(value)
            self._loaded.add((org_id, workflow_id))
        for (org_id, lead_id), owners in zip(leads, replies[len(unloaded):], strict=True):
            for workflow_id, owner in owners.items():
                state.assignments[(org_id, workflow_id.decode(), lead_id)] = owner.decode()
        return state

    def save(self, state: RoutingState) -> None:
        if not state.changed_pointers and not state.new_assignments:
            return
        pointer_updates: dict[str, dict[str, int]] = defaultdict(dict)
        for org_id, workflow_id, pool in state.changed_pointers:
            pointer_updates[state_keys.round_robin_pointers(org_id, workflow_id)][pool] = (
                state.pointers[(org_id, workflow_id, pool)])
        owner_updates: dict[str, dict[str, str]] = defaultdict(dict)
        for org_id, workflow_id, lead_id in state.new_assignments:
            owner_updates[state_keys.lead_owners(org_id, lead_id)][workflow_id] = (
                state.assignments[(org_id, workflow_id, lead_id)])
        with self._redis.pipeline(transaction=False) as pipe:
            for key, pointers in pointer_updates.items():
                pipe.hset(key, mapping=pointers)  # type: ignore[arg-type]
            for key, owners in owner_updates.items():
                pipe.hset(key, mapping=owners)  # type: ignore[arg-type]
                pipe.expire(key, ASSIGNMENT_TTL_S)
            pipe.execute()
