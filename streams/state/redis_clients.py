"""Redis clients as every DripPulse process makes them: with one immediate retry on a fresh
connection when a command fails for a connection error.

A pooled connection that sat idle while Redis restarted is closed on the server's side, and the
client learns it only when a command fails on it. redis-py's `from_url` retries nothing by default,
so after an outage each such connection failed one batch, and each failure cost the batch runtime a
back-off of up to 10 s: measured after a 10 s Redis stop, the CRM worker resumed 20 s after Redis
was back. With the retry the stale connection is replaced within the command.

A retried command runs twice if the connection broke after Redis ran it. What DripPulse sends is
safe to repeat (state writes that set values, leases, token reservations, scripts that skip what
they already did); the parked-round counter may count one round too many. The event-id claim
(SET NX) is the exception and is no worse off: without the retry its key would stay set too.
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

RETRIES = 1


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), RETRIES))


def connect_async(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, retry=AsyncRetry(NoBackoff(), RETRIES))
