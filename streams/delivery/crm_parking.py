"""Parked CRM commands: what a connection that keeps failing has not taken yet, retried later.

A batch cannot wait hours for one org's CRM to come back without holding back every other org on
its partitions. So a lead's commands that exhaust their quick in-batch attempts are parked, in
order, in a Redis list per (connection, lead), and so is every later command for that lead until
the list drains (a newer update must never overtake an older one). A schedule says when each parked
lead is retried; claiming leases it, like the webhook schedule, so a dying worker loses nothing.
After the last retry round the remaining commands fail, visibly, with the reason.

A connection that has just parked a lead is marked failing for two first retry delays (refreshed
while its retry rounds keep failing, cleared when one succeeds). Meanwhile later batches park its
commands untried: a CRM that hangs would otherwise cost every batch, and so every org behind it on
the partition, a timeout.

Ordering of the two-key steps is what keeps a command from being orphaned when a batch parks one
while a retrier drains the same list: the batch pushes then schedules (ZADD NX); the retrier, when
done, unschedules then looks at the list again and reschedules if anything arrived meanwhile.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis

from streams.clock import now_ms
from streams.state import state_keys

Chain = tuple[str, str, str]
"""(org_id, connection_id, lead_id): the unit that keeps its order."""

Connection = tuple[str, str]
"""(org_id, connection_id)."""

_CLAIM = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(members) do redis.call('ZADD', KEYS[1], ARGV[3], member) end
return members
"""

_SEPARATOR = "\x1f"


def _member(chain: Chain) -> str:
    return _SEPARATOR.join(chain)


def _key(chain: Chain) -> str:
    return state_keys.crm_parked(*chain)


class ParkedCommands:
    def __init__(self, client: aioredis.Redis, schedule_s: tuple[float, ...]) -> None:
        self._redis = client
        self._schedule_s = schedule_s
        self._claim = client.register_script(_CLAIM)

    async def failing(self, connections: list[Connection]) -> set[Connection]:
        """Those of `connections` marked failing."""
        if not connections:
            return set()
        pipe = self._redis.pipeline(transaction=False)
        for connection in connections:
            pipe.exists(state_keys.crm_connection_failing(*connection))
        return {c for c, failing in zip(connections, await pipe.execute(), strict=True) if failing}

    async def mark_failing(self, connections: set[Connection]) -> None:
        if not connections:
            return
        ttl_ms = max(1, int(2 * self._schedule_s[0] * 1000))
        pipe = self._redis.pipeline(transaction=False)
        for connection in connections:
            pipe.set(state_keys.crm_connection_failing(*connection), 1, px=ttl_ms)
        await pipe.execute()

    async def mark_recovered(self, connection: Connection) -> None:
        await self._redis.delete(state_keys.crm_connection_failing(*connection))

    async def parked(self, chains: list[Chain]) -> set[Chain]:
        """Those of `chains` with commands waiting: their new commands must queue behind them."""
        if not chains:
            return set()
        pipe = self._redis.pipeline(transaction=False)
        for chain in chains:
            pipe.exists(_key(chain))
        return {chain for chain, waiting in zip(chains, await pipe.execute(), strict=True) if waiting}

    async def park(self, chains: dict[Chain, list[dict[str, Any]]], due_now: bool = False) -> None:
        """Appends each chain's commands, in order. A chain not yet scheduled is due after the first
        delay, or at once (`due_now`: an operator asked for a retry)."""
        if not chains:
            return
        due = now_ms() + (0 if due_now else int(self._schedule_s[0] * 1000))
        pipe = self._redis.pipeline(transaction=False)
        for chain, commands in chains.items():
            pipe.rpush(_key(chain), *(orjson.dumps(c) for c in commands))
            pipe.zadd(state_keys.CRM_PARKED, {_member(chain): due}, nx=True)
        await pipe.execute()

    async def claim(self, limit: int, lease_ms: int) -> list[Chain]:
        now = now_ms()
        members = await self._claim(keys=[state_keys.CRM_PARKED], args=[now, limit, now + lease_ms])
        chains = []
        for member in members:
            org_id, connection_id, lead_id = member.decode().split(_SEPARATOR)
            chains.append((org_id, connection_id, lead_id))
        return chains

    async def load(self, chain: Chain) -> list[dict[str, Any]]:
        return [orjson.loads(raw) for raw in await self._redis.lrange(_key(chain), 0, -1)]

    async def settle(self, chain: Chain, done: int, failed_round: bool) -> bool:
        """Drops the `done` commands at the head. After a failed round, schedules the next one and
        answers False, or answers True when no round is left (the caller fails the rest, `drop`)."""
        if not failed_round:
            await self.drop(chain, done)
            return False
        member = _member(chain)
        pipe = self._redis.pipeline(transaction=False)
        pipe.ltrim(_key(chain), done, -1)
        pipe.hincrby(state_keys.CRM_PARKED_ROUNDS, member, 1)
        rounds = int((await pipe.execute())[1])
        if rounds >= len(self._schedule_s):
            return True
        await self._redis.zadd(state_keys.CRM_PARKED, {member: now_ms() + int(self._schedule_s[rounds] * 1000)})
        return False

    async def release(self, chain: Chain, done: int) -> None:
        """Drops the `done` commands at the head and makes the rest due at once, keeping the chain's
        retry rounds: a batch ran out of its budget for the connection, the CRM did not fail."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.ltrim(_key(chain), done, -1)
        pipe.zadd(state_keys.CRM_PARKED, {_member(chain): now_ms()})
        await pipe.execute()

    async def drop(self, chain: Chain, count: int) -> None:
        """Removes the first `count` commands (done, or failed for good) and ends the chain's retry
        rounds; one pipeline, executed in order: unschedule first, then look at the list again and
        reschedule if a batch parked something meanwhile (see the module doc)."""
        member = _member(chain)
        pipe = self._redis.pipeline(transaction=False)
        pipe.ltrim(_key(chain), count, -1)
        pipe.zrem(state_keys.CRM_PARKED, member)
        pipe.hdel(state_keys.CRM_PARKED_ROUNDS, member)
        pipe.llen(_key(chain))
        if (await pipe.execute())[-1]:
            await self._redis.zadd(state_keys.CRM_PARKED, {member: now_ms()})
