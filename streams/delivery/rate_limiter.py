"""A token bucket per integration connection, in Redis, so every CRM worker shares one budget.

Each call reserves a token, letting the balance go negative, and answers how long the caller must
wait before using it: one round trip per request, and callers are served in the order they asked.
Redis's own clock is used, so workers with drifting clocks still share one consistent bucket.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from streams.state import state_keys

_RESERVE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate / 1000) - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
if tokens >= 0 then return 0 end
return math.ceil(-tokens * 1000 / rate)
"""


class TokenBuckets:
    def __init__(self, client: aioredis.Redis) -> None:
        self._reserve = client.register_script(_RESERVE)

    async def reserve(self, org_id: str, connection_id: str, rate_per_s: float, burst: int) -> float:
        """Seconds to wait before the reserved request may be sent (0: now)."""
        key = state_keys.crm_bucket(org_id, connection_id)
        wait_ms = await self._reserve(keys=[key], args=[rate_per_s, burst])
        return int(wait_ms) / 1000
