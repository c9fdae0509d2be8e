"""Password attempts per email, in Redis: after `limit` attempts within `window_s` that did not prove
the password, the email is refused with 429 until the window ends, whatever the password. Password
guessing against one account gets ten tries per quarter hour, and each refused try costs no Argon2
work.

An attempt is counted before its password is checked, in one atomic step that also answers the
count: checking first and counting after the (slow) check would let every guess sent at the same
moment through. A proven password clears the count; logins and invitation acceptances share it.
"""

from __future__ import annotations

import hashlib

import redis.asyncio as aioredis

from api.problems import Problem

_COUNT = """
local attempts = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {attempts, ttl}
"""
"""The window starts at the first attempt and is never extended (EXPIRE NX, which Redis 6 lacks)."""


def throttle_key(email: str) -> str:
    """Hashed, so the throttle holds no email addresses."""
    return "dp:login:attempts:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()


class LoginThrottle:
    def __init__(self, client: aioredis.Redis, limit: int = 10, window_s: int = 900) -> None:
        self._count = client.register_script(_COUNT)
        self._redis = client
        self._limit = limit
        self._window_s = window_s

    async def attempt(self, email: str) -> None:
        """Counts one password attempt for this email; 429 when it is over the limit, before any
        password work."""
        attempts, ttl = await self._count(keys=[throttle_key(email)], args=[self._window_s])
        if int(attempts) > self._limit:
            retry_after = max(1, int(ttl))
            raise Problem(
                429,
                "too-many-logins",
                "Too many failed logins",
                f"{self._limit} failed logins for this email; try again in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )

    async def succeeded(self, email: str) -> None:
        await self._redis.delete(throttle_key(email))
