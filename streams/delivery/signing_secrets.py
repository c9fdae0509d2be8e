"""Standard Webhooks signing secrets with rotation, as stored in a record's `secrets` list.

Shared by outbound subscriptions (the worker signs with every valid secret) and inbound sources (a
request verifies against any valid secret). Each entry is sealed at rest; rotation adds a new secret
and keeps the previous ones valid until the overlap ends, so the other side can switch without a gap.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from typing import Any

from streams.clock import now_ms
from streams.state.secret_box import SecretBox

SECRET_PREFIX = "whsec_"


class Signer:
    """Signs with one secret as Standard Webhooks specifies: `v1,` + base64 of HMAC-SHA256 over
    `{webhook-id}.{webhook-timestamp}.{body}`. It uses `hmac.digest` (OpenSSL's one-shot HMAC): the
    `standardwebhooks` library builds an `hmac.new` object per message, which was a tenth of the
    dispatcher's time. Receivers in the tests verify with that library, which pins the format."""

    def __init__(self, secret: str) -> None:
        self._key = base64.b64decode(secret.removeprefix(SECRET_PREFIX) + "==")

    def sign(self, signed_content: bytes) -> str:
        return "v1," + base64.b64encode(hmac.digest(self._key, signed_content, "sha256")).decode()


def signature_header(signers: list[Signer], message_id: str, timestamp_s: int, body: str) -> str:
    """Space-separated signatures, one per valid secret (during a rotation, more than one)."""
    signed_content = f"{message_id}.{timestamp_s}.{body}".encode()
    return " ".join(signer.sign(signed_content) for signer in signers)


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
