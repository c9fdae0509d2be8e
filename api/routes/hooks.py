"""POST /api/v1/hooks/{source_id}: events pushed by a third party, authenticated by their signature.

Verification is the Standard Webhooks scheme, with the `standardwebhooks` library: HMAC-SHA256 over
`webhook-id.webhook-timestamp.body`, timestamps older or newer than 5 minutes refused, so a captured
request cannot be replayed later. Nothing is produced unless the signature holds. The sender's
`webhook-id` becomes the event id, so its retries of one message are deduplicated like any client id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status
from pydantic import ValidationError
from standardwebhooks import WebhookVerificationError
from standardwebhooks.webhooks import Webhook

from api.control_plane import inbound_sources
from api.control_plane.tables import InboundSource
from api.deps import Box, Db, PublicRoute, get_event_dedup, get_publisher
from api.event_dedup import EventIdDedup
from api.event_publisher import EventPublisher
from api.models import EventIn, EventsAccepted
from api.problems import Problem, invalid, responses, validation_errors
from api.routes.events import accept_events
from processors.payload_mapping import map_payload

router = APIRouter(prefix="/api/v1/hooks", tags=["inbound webhooks"])
MAX_BODY_BYTES = 256 * 1024


def _event(source: InboundSource, message_id: str, payload: Any) -> EventIn:
    if not isinstance(payload, dict):
        raise invalid([{"field": "$", "message": "the payload must be a JSON object"}])
    fields = map_payload(payload, source.mapping) if source.mapping else dict(payload)
    fields.setdefault("event_type", source.event_type)
    fields.setdefault("source", f"hook:{source.name}")
    fields["event_id"] = f"{source.id}:{message_id}"[:128]
    try:
        return EventIn.model_validate(fields)
    except ValidationError as exc:
        raise invalid(validation_errors(fields, exc.errors(include_url=False)), "the mapped event is invalid") from None


def _verified(secrets: Sequence[str], body: bytes, headers: dict[str, str]) -> Any:
    """The payload, if any valid secret verifies the request (two are valid during a rotation)."""
    failure: WebhookVerificationError | None = None
    for secret in secrets:
        try:
            return Webhook(secret).verify(body, headers)
        except WebhookVerificationError as exc:
            failure = exc
        except ValueError:
            raise invalid([{"field": "$", "message": "the body is not JSON"}]) from None
    raise Problem(401, "bad-signature", "Signature verification failed", str(failure)) from None


@router.post(
    "/{source_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EventsAccepted,
    responses=responses(401, 404, 413, 422, 503),
)
async def receive_hook(
    source_id: str,
    request: Request,
    _: PublicRoute,
    database: Db,
    box: Box,
    dedup: Annotated[EventIdDedup, Depends(get_event_dedup)],
    publisher: Annotated[EventPublisher, Depends(get_publisher)],
) -> EventsAccepted:
    """No API key: the signature made with the source's secret is the authentication."""
    async with database.transaction() as session:
        source = await inbound_sources.find(session, source_id)
    if source is None:
        raise Problem(404, "not-found", "Unknown inbound source", f"no inbound source {source_id}")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise Problem(413, "payload-too-large", "Payload too large", f"at most {MAX_BODY_BYTES} bytes")
    headers = {k.lower(): v for k, v in request.headers.items()}
    payload = _verified(inbound_sources.verification_secrets(box, source), body, headers)
    event = _event(source, headers["webhook-id"], payload)
    return await accept_events(source.org_id, [event], dedup, publisher)
