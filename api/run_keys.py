"""The `Idempotency-Key` of manual runs (POST /workflows/{id}/runs), in Redis: one record per (org,
workflow, key) with a time to live, the window in which a client may retry.

Redis rather than PostgreSQL: like the event-id dedup window it is hot state with an expiry, one
SET NX per request, not a control-plane record, and PostgreSQL would need a sweeper for it. Losing
it (Redis restored without its append-only file) costs no duplicate: the run's ids derive from
(org, workflow, key, lead), so a retry that finds no record publishes the same event ids again and
the copies collapse downstream as any replay's do. What the record adds is the refusal of another
body under the same key, and an answer without publishing again.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from streams.state import state_keys


@dataclass(frozen=True)
class KeyedRun:
    fingerprint: str
    answer: dict[str, Any]
    occurred_at_ms: int
    published: bool


def fingerprint(request: dict[str, Any]) -> str:
    """The request as validated, so a retry that orders its JSON keys differently is the same body."""
    return hashlib.sha256(orjson.dumps(request, option=orjson.OPT_SORT_KEYS)).hexdigest()


class RunKeys:
    def __init__(self, client: aioredis.Redis, window_s: int) -> None:
        self._redis = client
        self._window_s = window_s

    async def find(self, org_id: str, workflow_id: str, key: str) -> KeyedRun | None:
        stored = await self._redis.get(state_keys.manual_run_key(org_id, workflow_id, key))
        return KeyedRun(**orjson.loads(stored)) if stored is not None else None

    async def bind(self, org_id: str, workflow_id: str, key: str, run: KeyedRun) -> KeyedRun | None:
        """Binds the key to this run unless a request bound it first (then that binding). A binding
        outlives a failed publish: the retry publishes the same events, and another body stays
        refused, since the first body's events may still arrive."""
        name = state_keys.manual_run_key(org_id, workflow_id, key)
        while not await self._redis.set(name, orjson.dumps(asdict(run)), nx=True, ex=self._window_s):
            earlier = await self.find(org_id, workflow_id, key)
            if earlier is not None:
                return earlier
        return None

    async def published(self, org_id: str, workflow_id: str, key: str, run: KeyedRun) -> None:
        name = state_keys.manual_run_key(org_id, workflow_id, key)
        done = KeyedRun(run.fingerprint, run.answer, run.occurred_at_ms, published=True)
        await self._redis.set(name, orjson.dumps(asdict(done)), xx=True, keepttl=True)
