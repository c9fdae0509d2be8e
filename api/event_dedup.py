"""The dedup window of client event ids (`POST /events`, signed hooks), in Redis: hot state with a
time to live, one SET NX per id, not a control-plane record."""

from __future__ import annotations

import redis.asyncio as aioredis

from streams.state import state_keys


class EventIdDedup:
    def __init__(self, client: aioredis.Redis, window_s: int) -> None:
        self._redis = client
        self._window_s = window_s

    async def claim(self, org_id: str, event_ids: list[str]) -> list[bool]:
        """True for each id not seen in the window (and now claimed), False for a duplicate."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.set(state_keys.event_seen(org_id, event_id), b"1", nx=True, ex=self._window_s)
            replies = await pipe.execute()
        return [bool(reply) for reply in replies]

    async def seen(self, org_id: str, event_id: str) -> bool:
        """Whether the id was claimed in the window, claiming nothing: a retry of an accepted call is
        answered as the duplicate it is before anything else (an agent's budget) is asked."""
        return bool(await self._redis.exists(state_keys.event_seen(org_id, event_id)))

    async def release(self, org_id: str, event_ids: list[str]) -> None:
        """Undoes a claim when producing failed, so the client's retry is not taken for a duplicate."""
        if event_ids:
            await self._redis.delete(*(state_keys.event_seen(org_id, e) for e in event_ids))
