"""Our signatures are exactly what the `standardwebhooks` library makes and verifies."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook

from streams.delivery.signing_secrets import Signer, generate_signing_secret, signature_header


@given(message_id=st.text(min_size=1, max_size=40), body=st.text(max_size=300))
def test_signature_equals_the_reference_library(message_id: str, body: str) -> None:
    secret = generate_signing_secret()
    at = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert Signer(secret).sign(f"{message_id}.{int(at.timestamp())}.{body}".encode()) == Webhook(secret).sign(
        message_id, at, body
    )


def test_every_secret_of_a_rotation_verifies_the_header() -> None:
    old, new = generate_signing_secret(), generate_signing_secret()
    now = int(datetime.now(UTC).timestamp())
    body = '{"type":"lead.qualified"}'
    header = signature_header([Signer(new), Signer(old)], "msg_1", now, body)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": header}
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers) == {"type": "lead.qualified"}
    assert len(header.split(" ")) == 2
