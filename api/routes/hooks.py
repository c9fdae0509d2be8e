"""POST /api/v1/hooks/{source_id}: events pushed by a third party, authenticated by their signature.

Verification is the Standard Webhooks scheme: HMAC-SHA256 over `webhook-id.webhook-timestamp.body`,
timestamps older or newer than 5 minutes refused, so a captured request cannot be replayed later. The
signature is checked on the raw bytes before anything is parsed, so every signature problem is a 401
and nothing is produced; only a signed body is read as JSON. Like every route without credentials,
its body is refused over 256 KiB, declared or read (`api/request_limits.py`). The sender's
`webhook-id` becomes the event id, so its retries of one message are deduplicated like any client
id; an id too long for an event id is hashed whole, never cut, so two long ids sharing a prefix stay
two messages. A source that names an agent sends each event as a call of that agent
(`api/agent_hooks.py`).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, status
from pydantic import ValidationError

from api.agent_hooks import HookAccepted, call_agent
from api.control_plane import inbound_sources
from api.control_plane.tables import InboundSource
from api.deps import Box, Budgets, Db, PublicRoute, get_event_dedup, get_publisher
from api.event_dedup import EventIdDedup
from api.event_publisher import EventPublisher
from api.models import MAX_EVENT_ID_LENGTH, EventIn
from api.problems import Problem, invalid, responses, validation_errors
from api.routes.events import accept_events
from processors.payload_mapping import map_payload
from streams.delivery.signing_secrets import Signer

router = APIRouter(prefix="/api/v1/hooks", tags=["inbound webhooks"])
TOLERANCE_S = 300


def _fields(source: InboundSource, message_id: str, payload: Any) -> dict[str, Any]:
    """The event's fields as the payload (mapped, when the source maps) gives them."""
    if not isinstance(payload, dict):
        raise invalid([{"field": "$", "message": "the payload must be a JSON object"}])
    fields = map_payload(payload, source.mapping) if source.mapping else dict(payload)
    fields.setdefault("event_type", source.event_type)
    fields.setdefault("source", f"hook:{source.name}")
    fields["event_id"] = _event_id(source.id, message_id)
    return fields


def _event(fields: dict[str, Any]) -> EventIn:
    try:
        return EventIn.model_validate(fields)
    except ValidationError as exc:
        raise invalid(validation_errors(fields, exc.errors(include_url=False)), "the mapped event is invalid") from None


def _event_id(source_id: str, message_id: str) -> str:
    """`source:webhook-id`, or `source:sha256:<hex of the whole webhook-id>` when that is too long."""
    event_id = f"{source_id}:{message_id}"
    if len(event_id) <= MAX_EVENT_ID_LENGTH:
        return event_id
    return f"{source_id}:sha256:{hashlib.sha256(message_id.encode()).hexdigest()}"


def _refused(detail: str) -> Problem:
    return Problem(401, "bad-signature", "Signature verification failed", detail)


def _signed_message_id(secrets: Sequence[str], body: bytes, headers: dict[str, str]) -> str:
    """The request's `webhook-id`, if a valid secret signed it (two are valid during a rotation)."""
    message_id, timestamp = headers.get("webhook-id"), headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "").split()
    if not (message_id and timestamp and signatures):
        raise _refused("webhook-id, webhook-timestamp and webhook-signature are required")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise _refused("webhook-timestamp is not a Unix time in seconds")
    if abs(time.time() - int(timestamp)) > TOLERANCE_S:
        raise _refused(f"webhook-timestamp is more than {TOLERANCE_S} s away from now")
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = [Signer(secret).sign(signed) for secret in secrets]
    if not any(hmac.compare_digest(given.encode(), want.encode()) for given in signatures for want in expected):
        raise _refused("no signature matches a valid secret of this source")
    return message_id


@router.post(
    "/{source_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=HookAccepted,
    responses=responses(401, 404, 409, 410, 413, 422, 429, 503),
)
async def receive_hook(
    source_id: str,
    request: Request,
    _: PublicRoute,
    database: Db,
    box: Box,
    dedup: Annotated[EventIdDedup, Depends(get_event_dedup)],
    publisher: Annotated[EventPublisher, Depends(get_publisher)],
    budgets: Budgets,
) -> HookAccepted:
    """No API key: the signature made with the source's secret is the authentication. A source that
    calls an agent answers 409 `agent-paused` while the agent is paused (send it again later), 410
    once it is archived, 429 or 409 `agent-over-budget` when the call finds the agent over its
    budget (which pauses it, as any call over budget does), and 202 with the event under
    `rejected`, naming each field, when the agent's input schema refuses the lead (kept on the
    dead-letter topic: no need to send it again)."""
    async with database.transaction() as session:
        source = await inbound_sources.find(session, source_id)
    if source is None:
        raise Problem(404, "not-found", "Unknown inbound source", f"no inbound source {source_id}")
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    message_id = _signed_message_id(inbound_sources.verification_secrets(box, source), body, headers)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise invalid([{"field": "$", "message": "the body is not JSON"}]) from None
    fields = _fields(source, message_id, payload)
    event = _event(fields)
    if source.agent_id is not None:
        return await call_agent(database, source, event, fields.get("lead"), dedup, publisher, budgets)
    return HookAccepted(**(await accept_events(source.org_id, [event], dedup, publisher)).model_dump())
