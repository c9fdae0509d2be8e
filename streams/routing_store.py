"""Loads and saves the `RoutingState` a batch needs: one pipelined read, one pipelined write.

Pointers are written as absolute values, not increments, so saving the same batch twice (a replay)
leaves the same state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import redis

from processors.compiler import CompiledWorkflow
from processors.events import lead_id_of
from processors.routing import RoutingState
from streams import state_keys

ASSIGNMENT_TTL_S = 180 * 86_400


class RoutingStateStore:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def load(
        self, events: Iterable[Mapping[str, Any]], workflows: Mapping[str, tuple[CompiledWorkflow, ...]]
    ) -> RoutingState:
        rotating = {
            org_id: [w.workflow_id for w in compiled if w.uses_round_robin] for org_id, compiled in workflows.items()
        }
        leads = sorted({(e["org_id"], lead_id_of(e)) for e in events if rotating.get(e["org_id"])})
        pointer_keys = sorted((org_id, wf) for org_id, wfs in rotating.items() for wf in wfs)
        state = RoutingState()
        if not leads:
            return state
        with self._redis.pipeline(transaction=False) as pipe:
            for org_id, workflow_id in pointer_keys:
                pipe.hgetall(state_keys.round_robin_pointers(org_id, workflow_id))
            for org_id, lead_id in leads:
                pipe.hgetall(state_keys.lead_owners(org_id, lead_id))
            replies = pipe.execute()
        for (org_id, workflow_id), pointers in zip(pointer_keys, replies, strict=False):
            for pool, value in pointers.items():
                state.pointers[(org_id, workflow_id, pool.decode())] = int(value)
        for (org_id, lead_id), owners in zip(leads, replies[len(pointer_keys):], strict=True):
            for workflow_id, owner in owners.items():
                state.assignments[(org_id, workflow_id.decode(), lead_id)] = owner.decode()
        return state

    def save(self, state: RoutingState) -> None:
        if not state.changed_pointers and not state.new_assignments:
            return
        with self._redis.pipeline(transaction=False) as pipe:
            for org_id, workflow_id, pool in state.changed_pointers:
                pipe.hset(
                    state_keys.round_robin_pointers(org_id, workflow_id), pool,
                    state.pointers[(org_id, workflow_id, pool)],
                )
            for org_id, workflow_id, lead_id in state.new_assignments:
                key = state_keys.lead_owners(org_id, lead_id)
                pipe.hset(key, workflow_id, state.assignments[(org_id, workflow_id, lead_id)])
                pipe.expire(key, ASSIGNMENT_TTL_S)
            pipe.execute()
