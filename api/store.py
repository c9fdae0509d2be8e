"""The control-plane store: organizations, API keys and versioned workflows, in Redis.

Every method takes the caller's org id and touches only keys inside that org's hash tag, so tenant
isolation is a property of the key layout, not of each route remembering to check.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis

from api.api_keys import NewApiKey, generate_api_key, hash_api_key
from streams import state_keys
from streams.clock import now_ms
from streams.state_keys import new_id


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class VersionConflict(Exception):
    """The requested version cannot be activated (unknown version)."""


class ControlPlaneStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client

    # Organizations and keys

    async def create_org(self, name: str) -> tuple[dict[str, Any], NewApiKey]:
        org: dict[str, Any] = {"id": new_id("org"), "name": name, "created_at_ms": now_ms()}
        await self._redis.set(state_keys.org(org["id"]), orjson.dumps(org))
        await self._redis.sadd(state_keys.ORG_INDEX, org["id"])
        key = await self.create_api_key(org["id"], name="admin", role="admin")
        return org, key

    async def create_api_key(self, org_id: str, name: str, role: str) -> NewApiKey:
        key = generate_api_key()
        key_hash = hash_api_key(key.secret)
        record = {
            "id": key.key_id,
            "org_id": org_id,
            "name": name,
            "role": role,
            "prefix": key.display_prefix,
            "created_at_ms": now_ms(),
            "revoked_at_ms": None,
            "key_hash": key_hash,
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(state_keys.api_key(key_hash), orjson.dumps({"org_id": org_id, "key_id": key.key_id, "role": role}))
            pipe.hset(state_keys.org_api_keys(org_id), key.key_id, orjson.dumps(record))
            await pipe.execute()
        return key

    async def authenticate(self, secret: str) -> dict[str, Any] | None:
        raw = await self._redis.get(state_keys.api_key(hash_api_key(secret)))
        return orjson.loads(raw) if raw else None

    async def list_api_keys(self, org_id: str) -> list[dict[str, Any]]:
        entries = await self._redis.hgetall(state_keys.org_api_keys(org_id))
        keys = [orjson.loads(raw) for raw in entries.values()]
        for key in keys:
            key.pop("key_hash", None)
        return sorted(keys, key=lambda k: k["created_at_ms"])

    async def revoke_api_key(self, org_id: str, key_id: str) -> dict[str, Any] | None:
        raw = await self._redis.hget(state_keys.org_api_keys(org_id), key_id)
        if raw is None:
            return None
        record = orjson.loads(raw)
        if record["revoked_at_ms"] is None:
            record["revoked_at_ms"] = now_ms()
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(state_keys.api_key(record["key_hash"]))
                pipe.hset(state_keys.org_api_keys(org_id), key_id, orjson.dumps(record))
                await pipe.execute()
        record.pop("key_hash", None)
        return dict(record)

    # Workflows

    async def create_workflow(
        self, org_id: str, name: str, description: str, definition: dict[str, Any]
    ) -> dict[str, Any]:
        now = now_ms()
        workflow: dict[str, Any] = {
            "id": new_id("wf"),
            "name": name,
            "description": description,
            "status": "draft",
            "active_version": None,
            "latest_version": 1,
            "created_at_ms": now,
            "updated_at_ms": now,
        }
        version = {
            "version": 1,
            "status": "draft",
            "definition": definition,
            "created_at_ms": now,
            "activated_at_ms": None,
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(state_keys.workflow(org_id, workflow["id"]), orjson.dumps(workflow))
            pipe.hset(state_keys.workflow_versions(org_id, workflow["id"]), "1", orjson.dumps(version))
            pipe.zadd(state_keys.workflow_index(org_id), {workflow["id"]: now})
            await pipe.execute()
        return workflow

    async def get_workflow(self, org_id: str, workflow_id: str) -> dict[str, Any] | None:
        raw = await self._redis.get(state_keys.workflow(org_id, workflow_id))
        return orjson.loads(raw) if raw else None

    async def list_workflows(self, org_id: str, status: str | None = None) -> list[dict[str, Any]]:
        ids = await self._redis.zrevrange(state_keys.workflow_index(org_id), 0, -1)
        if not ids:
            return []
        raws = await self._redis.mget([state_keys.workflow(org_id, _text(i)) for i in ids])
        workflows = [orjson.loads(raw) for raw in raws if raw]
        return [w for w in workflows if status is None or w["status"] == status]

    async def list_versions(self, org_id: str, workflow_id: str) -> list[dict[str, Any]]:
        entries = await self._redis.hgetall(state_keys.workflow_versions(org_id, workflow_id))
        return sorted((orjson.loads(raw) for raw in entries.values()), key=lambda v: v["version"])

    async def get_version(self, org_id: str, workflow_id: str, version: int) -> dict[str, Any] | None:
        raw = await self._redis.hget(state_keys.workflow_versions(org_id, workflow_id), str(version))
        return orjson.loads(raw) if raw else None

    async def update_workflow(
        self, org_id: str, workflow: dict[str, Any], changes: dict[str, Any], definition: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Name/description change in place. A new definition replaces the latest version while it is a
        draft; once that version has been active, it becomes a new draft version instead, so running
        executions keep the version that produced them."""
        org_key = state_keys.workflow(org_id, workflow["id"])
        versions_key = state_keys.workflow_versions(org_id, workflow["id"])
        workflow = {**workflow, **changes, "updated_at_ms": now_ms()}
        async with self._redis.pipeline(transaction=True) as pipe:
            if definition is not None:
                latest = await self.get_version(org_id, workflow["id"], workflow["latest_version"])
                if latest is not None and latest["status"] == "draft":
                    latest["definition"] = definition
                    pipe.hset(versions_key, str(latest["version"]), orjson.dumps(latest))
                else:
                    number = workflow["latest_version"] + 1
                    pipe.hset(
                        versions_key,
                        str(number),
                        orjson.dumps(
                            {
                                "version": number,
                                "status": "draft",
                                "definition": definition,
                                "created_at_ms": workflow["updated_at_ms"],
                                "activated_at_ms": None,
                            }
                        ),
                    )
                    workflow["latest_version"] = number
            pipe.set(org_key, orjson.dumps(workflow))
            await pipe.execute()
        return workflow

    async def activate_workflow(self, org_id: str, workflow: dict[str, Any], version: int) -> dict[str, Any]:
        """Makes `version` the one active version and tells the workers (revision counter)."""
        target = await self.get_version(org_id, workflow["id"], version)
        if target is None:
            raise VersionConflict(f"workflow {workflow['id']} has no version {version}")
        now = now_ms()
        versions_key = state_keys.workflow_versions(org_id, workflow["id"])
        previous = workflow["active_version"]
        async with self._redis.pipeline(transaction=True) as pipe:
            if previous is not None and previous != version:
                old = await self.get_version(org_id, workflow["id"], previous)
                if old is not None:
                    old["status"] = "superseded"
                    pipe.hset(versions_key, str(previous), orjson.dumps(old))
            target.update(status="active", activated_at_ms=now)
            pipe.hset(versions_key, str(version), orjson.dumps(target))
            workflow = {**workflow, "status": "active", "active_version": version, "updated_at_ms": now}
            pipe.set(state_keys.workflow(org_id, workflow["id"]), orjson.dumps(workflow))
            pipe.hset(
                state_keys.active_workflows(org_id),
                workflow["id"],
                orjson.dumps({"version": version, "definition": target["definition"]}),
            )
            pipe.incr(state_keys.workflow_revision(org_id))
            await pipe.execute()
        return workflow

    async def deactivate_workflow(
        self, org_id: str, workflow: dict[str, Any], status: str = "inactive"
    ) -> dict[str, Any]:
        """Stops the workflow for new events (workers notice within a second); `archived` is final."""
        now = now_ms()
        async with self._redis.pipeline(transaction=True) as pipe:
            if workflow["active_version"] is not None:
                current = await self.get_version(org_id, workflow["id"], workflow["active_version"])
                if current is not None:
                    current["status"] = "superseded"
                    pipe.hset(
                        state_keys.workflow_versions(org_id, workflow["id"]),
                        str(current["version"]),
                        orjson.dumps(current),
                    )
            workflow = {**workflow, "status": status, "active_version": None, "updated_at_ms": now}
            pipe.set(state_keys.workflow(org_id, workflow["id"]), orjson.dumps(workflow))
            pipe.hdel(state_keys.active_workflows(org_id), workflow["id"])
            pipe.incr(state_keys.workflow_revision(org_id))
            await pipe.execute()
        return workflow

    # Inbound event dedup

    async def claim_event_ids(self, org_id: str, event_ids: list[str], window_s: int) -> list[bool]:
        """True for each id not seen in the window (and now claimed), False for a duplicate."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.set(state_keys.event_seen(org_id, event_id), b"1", nx=True, ex=window_s)
            replies = await pipe.execute()
        return [bool(reply) for reply in replies]

    async def release_event_ids(self, org_id: str, event_ids: list[str]) -> None:
        """Undoes a claim when producing failed, so the client's retry is not taken for a duplicate."""
        if event_ids:
            await self._redis.delete(*(state_keys.event_seen(org_id, e) for e in event_ids))
