"""Password work under load: Argon2 is slow on purpose, so a login must neither let many guesses
reach it at once nor hold up the requests of everyone else while it runs."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from api.login_throttle import throttle_key
from drippulse.settings import Settings
from tests import control_plane
from tests.integration.helpers import login
from tests.stack import ApiServer, api_process, wait_until

pytestmark = pytest.mark.stack
PASSWORD = "correct horse battery staple"
SLOW_HASH = "$argon2id$v=19$m=65536,t=100,p=1$IcFPY0u9iJUaV9iJt5IRCw$SUSkIuiPRFZHRugtxXeophORRJTfdyG1veonLEe92Pw"
"""Argon2id with 33 times the API's passes (seconds per check, on one core): a login against it is
still checking its password long after any cheap request would have answered."""
SLOW_LOGINS = 6
"""Three times the connections of the small pool below, fewer than the throttle's ten."""
FLOOD = 40
SMALL_POOL = {"DRIPPULSE_DATABASE_POOL_SIZE": "2", "DRIPPULSE_DATABASE_POOL_TIMEOUT_S": "3"}


def _email(what: str) -> str:
    return f"{what}-{uuid.uuid4().hex[:10]}@example.com"


def test_concurrent_wrong_passwords_reach_password_verification_at_most_limit_times(
    org_factory: Any, settings: Settings
) -> None:
    """Of forty guesses at once, ten are counted and checked; the rest are refused unchecked, as
    over the limit (429) or because the password checks already waiting fill the queue (503)."""
    org = org_factory()
    email = _email("stormed")
    control_plane.add_member(settings, org["org_id"], email, ["viewer"], PASSWORD)

    async def guesses() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=settings.api_url, timeout=120) as client:
            return await asyncio.gather(
                *(client.post("/api/v1/auth/login", json={"email": email, "password": f"guess {i}"}) for i in range(40))
            )

    answers = Counter(response.status_code for response in asyncio.run(guesses()))
    assert answers[401] == 10 and set(answers) <= {401, 429, 503}, answers
    assert login(settings, email, PASSWORD).status_code == 429, "until the window ends, even the right password"


@pytest.fixture(scope="module")
def small_pool(api_server: ApiServer, settings: Settings, clickhouse_http: tuple[str, Path]) -> Iterator[Settings]:
    """An API process of its own with two PostgreSQL connections, for which a request waits 3 s."""
    url, _ = clickhouse_http
    with api_process(settings, {**SMALL_POOL, "CLICKHOUSE_URL": url}) as reached:
        yield reached


def test_logins_waiting_for_password_work_never_starve_other_requests_of_connections(
    org_factory: Any, settings: Settings, small_pool: Settings
) -> None:
    """Three times as many logins in flight as the API has PostgreSQL connections, each checking a
    password for seconds, then a flood of logins with random emails (each of which costs a password
    check too): events are still accepted and an authenticated read still answers, because a login
    holds no connection while it waits for Argon2; no login answers 500, and one that would only
    lengthen the queue is told to come back later (503 `busy`, `Retry-After`)."""
    org = org_factory()
    email = _email("slow")
    user_id = control_plane.add_member(settings, org["org_id"], email, ["viewer"], PASSWORD)
    control_plane.store_password_hash(settings, user_id, SLOW_HASH)
    counter = redis.Redis.from_url(settings.redis_url)
    client = httpx.Client(base_url=small_pool.api_url, headers={"Authorization": f"Bearer {org['key']}"}, timeout=60)
    event = {"event_type": "lead.created", "lead": {"lead_id": "l-during-logins"}}
    with ThreadPoolExecutor(SLOW_LOGINS + FLOOD) as pool:
        slow = [pool.submit(login, small_pool, email, f"wrong {i}") for i in range(SLOW_LOGINS)]
        counted = str(SLOW_LOGINS).encode()
        wait_until(lambda: counter.get(throttle_key(email)) == counted, 60, "the slow logins to be counted")
        flood = [pool.submit(login, small_pool, _email("random"), "a guess") for _ in range(FLOOD)]
        events, me = client.post("/api/v1/events", json=event), client.get("/api/v1/auth/me")
        slow_answers, flood_answers = [f.result() for f in slow], [f.result() for f in flood]
    assert (events.status_code, me.status_code) == (202, 200), (events.text, me.text)
    assert [answer.status_code for answer in slow_answers] == [401] * SLOW_LOGINS
    assert {answer.status_code for answer in flood_answers} <= {401, 503}, [a.text for a in flood_answers]
    busy = [answer for answer in flood_answers if answer.status_code == 503]
    assert busy, "the slow logins fill most of the queue: a flood finds it full"
    assert all(a.json()["type"].endswith("/busy") and int(a.headers["Retry-After"]) > 0 for a in busy)
