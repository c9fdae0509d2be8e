"""Standard Webhooks signing secrets with rotation, as stored in a record's `secrets` list.

Shared by outbound subscriptions (the worker signs with every valid secret) and inbound sources (a
request verifies against any valid secret). Each entry is sealed at rest; rotation adds a new secret
and keeps the previous ones valid until the overlap ends, so the other side can switch without a gap.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from streams.clock import now_ms
from streams.secret_box import SecretBox

SECRET_PREFIX = "whsec_"



def generate_signing_secret() -> str:
    """Standard Webhooks format: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def new_secrets(box: SecretBox) -> tuple[list[dict[str, Any]], str]:
    """A first secret: the stored list, and the plaintext to show once."""
    secret = generate_signing_secret()
    return [{"sealed": box.seal(secret), "created_at_ms": now_ms(), "expires_at_ms": None}], secret


def rotated(current: list[dict[str, Any]], box: SecretBox, overlap_s: int) -> tuple[list[dict[str, Any]], str]:
    """A new secret first, the previous ones kept until `overlap_s` from now (dropped when 0)."""
    now = now_ms()
    fresh, secret = new_secrets(box)
    kept = [{**s, "expires_at_ms": s["expires_at_ms"] or now + overlap_s * 1000} for s in current]
    return fresh + (kept if overlap_s > 0 else []), secret


def valid(current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The secrets still valid now, newest first."""
    now = now_ms()
    return [s for s in current if s["expires_at_ms"] is None or s["expires_at_ms"] > now]


def rotation_view(current: list[dict[str, Any]]) -> dict[str, Any]:
    """What the API shows instead of the secrets: how many, and until when the old ones sign."""
    expiring = [s["expires_at_ms"] for s in current if s["expires_at_ms"] is not None]
    return {"signing_secrets": len(current), "previous_secret_valid_until_ms": max(expiring) if expiring else None}
