"""Inbound webhook sources: third parties (form tools, enrichment services, other CRMs) that push
events to `POST /api/v1/hooks/{source_id}`, signed the Standard Webhooks way with a secret shown once.

A source says how its payload becomes an inbound event: a fixed event type and a mapping from event
fields to dotted paths in the payload, or no mapping when the sender posts DripPulse events as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from streams import state_keys
from streams.clock import now_ms
from streams.secret_box import SecretBox
from streams.signing_secrets import new_secrets, rotated, rotation_view, valid
from streams.state_keys import new_id


def public_view(record: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in record.items() if k != "secrets"} | rotation_view(valid(record["secrets"]))
    view["hook_path"] = f"/api/v1/hooks/{record['id']}"
    return view


class InboundSources:
    def __init__(self, client: aioredis.Redis, box: SecretBox) -> None:
        self._redis = client
        self._box = box

    async def create(self, org_id: str, fields: dict[str, Any]) -> tuple[dict[str, Any], str]:
        stored, secret = new_secrets(self._box)
        record = {
            "id": new_id("src"),
            "org_id": org_id,
            **fields,
            "created_at_ms": now_ms(),
            "secrets": stored,
        }
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(state_keys.inbound_sources(org_id), record["id"], orjson.dumps(record))
            pipe.set(state_keys.inbound_source_owner(record["id"]), org_id)
            await pipe.execute()
        return record, secret

    async def get(self, org_id: str, source_id: str) -> dict[str, Any] | None:
        raw = await self._redis.hget(state_keys.inbound_sources(org_id), source_id)
        return orjson.loads(raw) if raw else None

    async def find(self, source_id: str) -> dict[str, Any] | None:
        """A source by id alone, for an unauthenticated hook request: its signature is checked next."""
        org_id = await self._redis.get(state_keys.inbound_source_owner(source_id))
        if org_id is None:
            return None
        return await self.get(org_id.decode() if isinstance(org_id, bytes) else org_id, source_id)

    async def list(self, org_id: str) -> list[dict[str, Any]]:
        entries = await self._redis.hgetall(state_keys.inbound_sources(org_id))
        return sorted((orjson.loads(v) for v in entries.values()), key=lambda r: r["created_at_ms"])

    async def delete(self, org_id: str, source_id: str) -> bool:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hdel(state_keys.inbound_sources(org_id), source_id)
            pipe.delete(state_keys.inbound_source_owner(source_id))
            removed, _ = await pipe.execute()
        return bool(removed)

    async def rotate_secret(self, record: dict[str, Any], overlap_s: int) -> tuple[dict[str, Any], str]:
        stored, secret = rotated(valid(record["secrets"]), self._box, overlap_s)
        record = {**record, "secrets": stored}
        await self._redis.hset(state_keys.inbound_sources(record["org_id"]), record["id"], orjson.dumps(record))
        return record, secret

    def verification_secrets(self, record: dict[str, Any]) -> Sequence[str]:
        """Every secret a request may be signed with now (during a rotation, old and new)."""
        return [self._box.open(s["sealed"]) for s in valid(record["secrets"])]
