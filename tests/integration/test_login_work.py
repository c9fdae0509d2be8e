"""Password work under load: Argon2 is slow on purpose, so a login must neither let many guesses
reach it at once nor hold up the requests of everyone else while it runs."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis

from api.login_throttle import throttle_key
from drippulse.settings import Settings
from tests import control_plane
from tests.integration.helpers import login
from tests.stack import wait_until

pytestmark = pytest.mark.stack
PASSWORD = "correct horse battery staple"
SLOW_HASH = "$argon2id$v=19$m=65536,t=100,p=1$IcFPY0u9iJUaV9iJt5IRCw$SUSkIuiPRFZHRugtxXeophORRJTfdyG1veonLEe92Pw"
"""Argon2id with 33 times the API's passes (seconds per check, on one core): a login against it is
still checking its password long after any cheap request would have answered."""


def _email(what: str) -> str:
    return f"{what}-{uuid.uuid4().hex[:10]}@example.com"


def test_concurrent_wrong_passwords_reach_password_verification_at_most_limit_times(
    org_factory: Any, settings: Settings
) -> None:
    org = org_factory()
    email = _email("stormed")
    control_plane.add_member(settings, org["org_id"], email, ["viewer"], PASSWORD)

    async def guesses() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=settings.api_url, timeout=120) as client:
            return await asyncio.gather(
                *(client.post("/api/v1/auth/login", json={"email": email, "password": f"guess {i}"}) for i in range(40))
            )

    answers = Counter(response.status_code for response in asyncio.run(guesses()))
    assert answers == {401: 10, 429: 30}, "only the first ten guesses are checked"
    assert login(settings, email, PASSWORD).status_code == 429, "until the window ends, even the right password"


def test_password_work_never_stalls_other_requests(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    email = _email("slow")
    user_id = control_plane.add_member(settings, org["org_id"], email, ["viewer"], PASSWORD)
    control_plane.store_password_hash(settings, user_id, SLOW_HASH)
    counter = redis.Redis.from_url(settings.redis_url)
    event = {"event_type": "lead.created", "lead": {"lead_id": "l-during-logins"}}
    with ThreadPoolExecutor(3) as pool:
        logins = [pool.submit(login, settings, email, f"wrong {i}") for i in range(3)]
        wait_until(lambda: counter.get(throttle_key(email)) == b"3", 60, "the three logins to be counted")
        assert httpx.get(f"{settings.api_url}/health", timeout=60).status_code == 200
        assert org["client"].get("/api/v1/auth/me").status_code == 200
        assert org["client"].post("/api/v1/events", json=event).status_code == 202
        assert not any(pending.done() for pending in logins), "other requests answered while passwords were checked"
        assert [pending.result().status_code for pending in logins] == [401] * 3
