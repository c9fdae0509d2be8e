"""Client bookkeeping of OutboundHttp, without sending anything."""

from __future__ import annotations

import asyncio

import pytest

from streams.delivery.outbound_http import NoAnswer, OutboundHttp
from streams.delivery.ssrf_guard import UnsafeDestination, destination


def test_the_least_recently_used_client_is_closed_beyond_the_cap() -> None:
    async def scenario() -> tuple[bool, bool, int]:
        http = OutboundHttp(5, allow_loopback=True, default_headers={}, max_clients=2)
        first = await http._client_for(destination("http://127.0.0.1:1001/a"))
        await http._client_for(destination("http://127.0.0.1:1002/a"))
        again = await http._client_for(destination("http://127.0.0.1:1001/b"))
        await http._client_for(destination("http://127.0.0.1:1003/a"))
        kept = await http._client_for(destination("http://127.0.0.1:1001/c"))
        replaced = await http._client_for(destination("http://127.0.0.1:1002/c"))
        count = len(http._clients)
        await http.close()
        return first is again is kept, replaced is not first, count

    reused, fresh, count = asyncio.run(scenario())
    assert reused, "one client per host and port, reused while recently used"
    assert fresh and count == 2, "port 1002 was least recently used, so it was dropped and rebuilt"


def test_unsafe_or_unreadable_urls_are_refused_before_any_client_exists() -> None:
    async def scenario() -> int:
        http = OutboundHttp(5, allow_loopback=False, default_headers={})
        for url in ("http://169.254.169.254/latest/meta-data", "http://example.com:99999/", "ftp://example.com/"):
            with pytest.raises(UnsafeDestination):
                await http.request("GET", url, b"", {}, 0)
        return len(http._clients)

    assert asyncio.run(scenario()) == 0


def test_a_header_the_client_cannot_send_is_a_failed_attempt_that_does_not_quote_it() -> None:
    async def scenario() -> str:
        http = OutboundHttp(5, allow_loopback=True, default_headers={})
        with pytest.raises(NoAnswer) as refused:
            await http.request("POST", "http://127.0.0.1:9/", b"{}", {"authorization": "Bearer pat-s3cret\nx"}, 10)
        await http.close()
        return str(refused.value)

    message = asyncio.run(scenario())
    assert "cannot be sent" in message and "s3cret" not in message
