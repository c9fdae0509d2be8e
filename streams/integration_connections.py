"""Integration connections of an organization: where its CRM commands are applied, and how.

Credentials (an API token) are sealed at rest with the same SecretBox as webhook secrets, never
returned by the API and never logged; only the CRM worker opens them, to build its request headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis

from streams import state_keys
from streams.clock import now_ms
from streams.secret_box import SecretBox
from streams.state_keys import new_id


def public_view(record: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in record.items() if k != "sealed_credentials"}
    view["has_credentials"] = bool(record.get("sealed_credentials"))
    return view


def decode_connections(raw: Mapping[bytes | str, bytes | str]) -> list[dict[str, Any]]:
    """The org's connections as HGETALL returns them, oldest first."""
    return sorted((orjson.loads(value) for value in raw.values()), key=lambda r: r["created_at_ms"])


class IntegrationConnections:
    def __init__(self, client: aioredis.Redis, box: SecretBox) -> None:
        self._redis = client
        self._box = box

    async def create(self, org_id: str, fields: dict[str, Any], credentials: str | None) -> dict[str, Any]:
        now = now_ms()
        record = {"id": new_id("conn"), **fields, "created_at_ms": now, "updated_at_ms": now}
        record["sealed_credentials"] = self._box.seal(credentials) if credentials else None
        await self._save(org_id, record)
        return record

    async def get(self, org_id: str, connection_id: str) -> dict[str, Any] | None:
        raw = await self._redis.hget(state_keys.integration_connections(org_id), connection_id)
        return orjson.loads(raw) if raw else None

    async def list(self, org_id: str) -> list[dict[str, Any]]:
        return decode_connections(await self._redis.hgetall(state_keys.integration_connections(org_id)))

    async def update(
        self, org_id: str, record: dict[str, Any], changes: dict[str, Any], credentials: str | None
    ) -> dict[str, Any]:
        record = {**record, **changes, "updated_at_ms": now_ms()}
        if credentials is not None:
            record["sealed_credentials"] = self._box.seal(credentials) if credentials else None
        await self._save(org_id, record)
        return record

    async def delete(self, org_id: str, connection_id: str) -> bool:
        return bool(await self._redis.hdel(state_keys.integration_connections(org_id), connection_id))

    async def _save(self, org_id: str, record: dict[str, Any]) -> None:
        await self._redis.hset(state_keys.integration_connections(org_id), record["id"], orjson.dumps(record))
