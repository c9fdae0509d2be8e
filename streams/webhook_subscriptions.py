"""Webhook subscriptions of an organization, in Redis, with signing secrets sealed at rest.

A secret is shown once (on create or rotation) and stored only encrypted. Rotation keeps the old
secret valid for an overlap period, during which deliveries are signed with both, so receivers can
switch without dropping a message. The API manages subscriptions; the delivery worker reads them
(`decode_subscriptions`, with a sync client in its intake thread) and disables failing ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis

from streams import state_keys
from streams.clock import now_ms
from streams.secret_box import SecretBox
from streams.signing_secrets import new_secrets, rotated, rotation_view, valid
from streams.state_keys import new_id


def public_view(record: dict[str, Any]) -> dict[str, Any]:
    """What the API shows: never a secret, only how many are valid and until when the old ones are."""
    view = {k: v for k, v in record.items() if k != "secrets"} | rotation_view(record["secrets"])
    view.setdefault("disabled_reason", None)
    return view


def _pruned(record: dict[str, Any]) -> dict[str, Any]:
    """Drops secrets whose overlap period is over: they no longer sign anything."""
    record["secrets"] = valid(record["secrets"])
    return record


def decode_subscriptions(raw: Mapping[bytes | str, bytes | str]) -> dict[str, dict[str, Any]]:
    """webhook_id -> subscription, from the org's hash as HGETALL returns it."""
    return {_text(key): _pruned(orjson.loads(value)) for key, value in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class WebhookSubscriptions:
    def __init__(self, client: aioredis.Redis, box: SecretBox) -> None:
        self._redis = client
        self._box = box

    async def create(self, org_id: str, fields: dict[str, Any]) -> tuple[dict[str, Any], str]:
        stored, secret = new_secrets(self._box)
        now = now_ms()
        record = {
            "id": new_id("wh"),
            **fields,
            "disabled_reason": None,
            "created_at_ms": now,
            "updated_at_ms": now,
            "secrets": stored,
        }
        await self._save(org_id, record)
        return record, secret

    async def get(self, org_id: str, webhook_id: str) -> dict[str, Any] | None:
        raw = await self._redis.hget(state_keys.webhooks(org_id), webhook_id)
        return _pruned(orjson.loads(raw)) if raw else None

    async def list(self, org_id: str) -> list[dict[str, Any]]:
        entries = await self._redis.hgetall(state_keys.webhooks(org_id))
        return sorted(decode_subscriptions(entries).values(), key=lambda r: r["created_at_ms"])

    async def update(self, org_id: str, record: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        """Re-enabling clears the reason it was disabled and the endpoint's failure streak."""
        record = {**record, **changes, "updated_at_ms": now_ms()}
        if changes.get("enabled"):
            record["disabled_reason"] = None
            await self._redis.hdel(state_keys.webhook_failing_since(org_id), record["id"])
        await self._save(org_id, record)
        return record

    async def disable(self, org_id: str, webhook_id: str, reason: str) -> bool:
        """False when there was nothing to disable (gone, or disabled already)."""
        record = await self.get(org_id, webhook_id)
        if record is None or not record.get("enabled", True):
            return False
        disabled = {**record, "enabled": False, "disabled_reason": reason, "updated_at_ms": now_ms()}
        await self._save(org_id, disabled)
        return True

    async def delete(self, org_id: str, webhook_id: str) -> bool:
        return bool(await self._redis.hdel(state_keys.webhooks(org_id), webhook_id))

    async def rotate_secret(self, org_id: str, record: dict[str, Any], overlap_s: int) -> tuple[dict[str, Any], str]:
        stored, secret = rotated(record["secrets"], self._box, overlap_s)
        record = {**record, "updated_at_ms": now_ms(), "secrets": stored}
        await self._save(org_id, record)
        return _pruned(record), secret

    def open_secret(self, sealed: str) -> str:
        """A signing secret in plaintext, for the delivery worker to sign with; never stored so."""
        return self._box.open(sealed)

    async def _save(self, org_id: str, record: dict[str, Any]) -> None:
        await self._redis.hset(state_keys.webhooks(org_id), record["id"], orjson.dumps(record))
