"""Client bookkeeping of OutboundHttp, without sending anything."""

from __future__ import annotations

import asyncio

import pytest

from streams.outbound_http import OutboundHttp
from streams.ssrf_guard import UnsafeDestination


def test_the_least_recently_used_client_is_closed_beyond_the_cap() -> None:
    async def scenario() -> tuple[bool, bool, int]:
        http = OutboundHttp(5, allow_loopback=True, default_headers={}, max_clients=2)
        first = await http._client_for("http://127.0.0.1:1001/a")
        await http._client_for("http://127.0.0.1:1002/a")
        again = await http._client_for("http://127.0.0.1:1001/b")
        await http._client_for("http://127.0.0.1:1003/a")
        kept = await http._client_for("http://127.0.0.1:1001/c")
        replaced = await http._client_for("http://127.0.0.1:1002/c")
        count = len(http._clients)
        await http.close()
        return first is again is kept, replaced is not first, count

    reused, fresh, count = asyncio.run(scenario())
    assert reused, "one client per host and port, reused while recently used"
    assert fresh and count == 2, "port 1002 was least recently used, so it was dropped and rebuilt"


def test_unsafe_literals_are_refused_before_any_client_exists() -> None:
    async def scenario() -> int:
        http = OutboundHttp(5, allow_loopback=False, default_headers={})
        with pytest.raises(UnsafeDestination):
            await http._client_for("http://169.254.169.254/latest/meta-data")
        return len(http._clients)

    assert asyncio.run(scenario()) == 0
