"""The create/update-time SSRF check every outbound URL a customer configures goes through."""

from __future__ import annotations

from fastapi.concurrency import run_in_threadpool

from api.problems import Problem
from drippulse.settings import Settings
from streams.delivery.ssrf_guard import UnsafeDestination, check_destination


async def refuse_unsafe(url: str, settings: Settings, field: str) -> None:
    """A 422 naming `field` unless the URL resolves only to public addresses (DNS runs off the loop)."""
    try:
        await run_in_threadpool(check_destination, url, settings.webhook_allow_loopback)
    except UnsafeDestination as exc:
        errors = [{"field": field, "message": str(exc)}]
        raise Problem(422, "unsafe-destination", "Destination refused", str(exc), errors=errors) from None
