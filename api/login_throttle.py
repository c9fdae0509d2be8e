"""Failed logins per email, in Redis: after `limit` failures within `window_s`, the email is refused
with 429 until the window ends, whatever the password. Password guessing against one account gets
ten tries per quarter hour, and each refused try costs no Argon2 work."""

from __future__ import annotations

import hashlib

import redis.asyncio as aioredis

from api.problems import Problem


def _key(email: str) -> str:
    """Hashed, so the throttle holds no email addresses."""
    return "dp:login:failed:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()


class LoginThrottle:
    """The window starts at the first failure (SET NX with a time to live; INCR keeps it)."""

    def __init__(self, client: aioredis.Redis, limit: int = 10, window_s: int = 900) -> None:
        self._redis = client
        self._limit = limit
        self._window_s = window_s

    async def check(self, email: str) -> None:
        key = _key(email)
        failures = await self._redis.get(key)
        if failures is not None and int(failures) >= self._limit:
            retry_after = max(1, int(await self._redis.ttl(key)))
            raise Problem(
                429,
                "too-many-logins",
                "Too many failed logins",
                f"{self._limit} failed logins for this email; try again in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )

    async def failed(self, email: str) -> None:
        key = _key(email)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key, 0, ex=self._window_s, nx=True)
            pipe.incr(key)
            await pipe.execute()

    async def succeeded(self, email: str) -> None:
        await self._redis.delete(_key(email))
