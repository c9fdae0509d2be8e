"""Webhook subscriptions of an organization, in Redis, with signing secrets sealed at rest.

A secret is shown once (on create or rotation) and stored only encrypted. Rotation keeps the old
secret valid for an overlap period, during which deliveries are signed with both, so receivers can
switch without dropping a message.
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any

import orjson
import redis.asyncio as aioredis

from api.store import new_id
from streams.secret_box import SecretBox

SECRET_PREFIX = "whsec_"


def _now_ms() -> int:
    return int(time.time() * 1000)


def generate_signing_secret() -> str:
    """Standard Webhooks format: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(org_id: str) -> str:
    return f"dp:{{{org_id}}}:webhooks"


def public_view(record: dict[str, Any]) -> dict[str, Any]:
    """What the API shows: never a secret, only how many are valid and until when the old ones are."""
    view = {k: v for k, v in record.items() if k != "secrets"}
    expiring = [s["expires_at_ms"] for s in record["secrets"] if s["expires_at_ms"] is not None]
    view["signing_secrets"] = len(record["secrets"])
    view["previous_secret_valid_until_ms"] = max(expiring) if expiring else None
    return view


class WebhookSubscriptions:
    def __init__(self, client: aioredis.Redis, box: SecretBox) -> None:
        self._redis = client
        self._box = box

    async def create(self, org_id: str, fields: dict[str, Any]) -> tuple[dict[str, Any], str]:
        secret = generate_signing_secret()
        now = _now_ms()
        record = {
            "id": new_id("wh"),
            **fields,
            "created_at_ms": now,
            "updated_at_ms": now,
            "secrets": [{"sealed": self._box.seal(secret), "created_at_ms": now, "expires_at_ms": None}],
        }
        await self._redis.hset(_key(org_id), record["id"], orjson.dumps(record))
        return record, secret

    async def get(self, org_id: str, webhook_id: str) -> dict[str, Any] | None:
        raw = await self._redis.hget(_key(org_id), webhook_id)
        return self._pruned(orjson.loads(raw)) if raw else None

    async def list(self, org_id: str) -> list[dict[str, Any]]:
        entries = await self._redis.hgetall(_key(org_id))
        return sorted((self._pruned(orjson.loads(raw)) for raw in entries.values()), key=lambda r: r["created_at_ms"])

    async def update(self, org_id: str, record: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        record = {**record, **changes, "updated_at_ms": _now_ms()}
        await self._redis.hset(_key(org_id), record["id"], orjson.dumps(record))
        return record

    async def delete(self, org_id: str, webhook_id: str) -> bool:
        return bool(await self._redis.hdel(_key(org_id), webhook_id))

    async def rotate_secret(self, org_id: str, record: dict[str, Any], overlap_s: int) -> tuple[dict[str, Any], str]:
        now = _now_ms()
        secret = generate_signing_secret()
        kept = [{**s, "expires_at_ms": s["expires_at_ms"] or now + overlap_s * 1000} for s in record["secrets"]]
        if overlap_s == 0:
            kept = []
        record = {
            **record,
            "updated_at_ms": now,
            "secrets": [{"sealed": self._box.seal(secret), "created_at_ms": now, "expires_at_ms": None}, *kept],
        }
        await self._redis.hset(_key(org_id), record["id"], orjson.dumps(record))
        return self._pruned(record), secret

    @staticmethod
    def _pruned(record: dict[str, Any]) -> dict[str, Any]:
        now = _now_ms()
        record["secrets"] = [s for s in record["secrets"] if s["expires_at_ms"] is None or s["expires_at_ms"] > now]
        return record
