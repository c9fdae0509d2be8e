"""POST /api/v1/events: validate, deduplicate client event ids, produce, answer 202."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, status
from pydantic import TypeAdapter, ValidationError

from api.deps import EventsSend, get_event_dedup, get_publisher
from api.event_dedup import EventIdDedup
from api.event_publisher import EventPublisher, EventTooLarge, PublishFailed
from api.models import MAX_EVENTS_PER_REQUEST, EventIn, EventsAccepted
from api.problems import RETRY_AFTER, Problem, invalid, responses, validation_errors
from api.request_limits import BodyLimit

router = APIRouter(prefix="/api/v1/events", tags=["events"])
BODY_LIMIT = 8 * 1024 * 1024
"""Up to 1,000 events of up to 256 KiB each, in at most 8 MiB."""
_batch = TypeAdapter(list[EventIn])


def _parse(body: Any) -> list[EventIn]:
    """Accepts one event object or a JSON array of up to MAX_EVENTS_PER_REQUEST events."""
    if isinstance(body, list):
        if not body:
            raise invalid([{"field": "$", "message": "the batch is empty"}])
        if len(body) > MAX_EVENTS_PER_REQUEST:
            raise Problem(
                413,
                "batch-too-large",
                "Batch too large",
                f"{len(body)} events; at most {MAX_EVENTS_PER_REQUEST} per request",
            )
        try:
            return _batch.validate_python(body)
        except ValidationError as exc:
            raise invalid(
                validation_errors(body, exc.errors(include_url=False), batch=True),
                "some events are invalid; nothing was accepted",
            ) from None
    try:
        return [EventIn.model_validate(body)]
    except ValidationError as exc:
        raise invalid(validation_errors(body, exc.errors(include_url=False))) from None


async def accept_events(
    org_id: str,
    events: list[EventIn],
    dedup: EventIdDedup,
    publisher: EventPublisher,
    batch: bool = False,
    run_of: str | None = None,
    refusal: tuple[str, str] | None = None,
) -> EventsAccepted:
    """Drops client event ids seen in the dedup window, produces the rest and waits for the broker's
    acknowledgement, so acceptance means durably queued. Shared by /events and signed inbound hooks.
    Without the acknowledgement the answer is 503 with Retry-After, the ids are released from the
    dedup window so the client's retry is accepted, and the retry's copies collapse downstream on
    the ids derived from the event id (api/event_publisher.py).

    All or nothing: every event is encoded and its size checked before any id is claimed or any
    record produced (413 naming the first too large), and the claims are released whatever makes
    producing fail.

    `run_of`: the events are a manual run of that workflow alone (an agent's backing workflow, for a
    source that calls an agent), not events every workflow of the org sees. `refusal`: (error kind,
    reason) why they are not published; they are kept on drip.events.dlq instead (a call its agent
    refuses), claimed like published ones, so a retry of them is a duplicate and not kept twice,
    and counted in neither `accepted` nor `event_ids`."""
    records = [event.to_record(org_id) for event in events]
    if run_of is not None:
        records = [{**record, "trigger": "MANUAL", "workflow_id": run_of} for record in records]
    try:
        values = publisher.encode(records)
    except EventTooLarge as exc:
        where = {"index": exc.index, "field": f"$[{exc.index}]"} if batch else {"field": "$"}
        errors = [{**where, "message": str(exc)}]
        raise Problem(
            413, "event-too-large", "Event too large", f"{exc}; nothing was accepted", errors=errors
        ) from None
    client_ids = list(dict.fromkeys(r["event_id"] for r, e in zip(records, events, strict=True) if e.event_id))
    claimed = await dedup.claim(org_id, client_ids)
    claimable = {event_id for event_id, fresh in zip(client_ids, claimed, strict=True) if fresh}
    fresh_records, fresh_values, duplicates = [], [], []
    for record, value, event in zip(records, values, events, strict=True):
        if event.event_id is None or record["event_id"] in claimable:
            claimable.discard(record["event_id"])
            fresh_records.append(record)
            fresh_values.append(value)
        else:
            duplicates.append(record["event_id"])
    try:
        if refusal is None:
            await publisher.publish_encoded([org_id] * len(fresh_values), fresh_values)
        else:
            for value in fresh_values:
                await publisher.dead_letter(org_id, value, *refusal)
    except BaseException as exc:
        await dedup.release(org_id, [r["event_id"] for r in fresh_records])
        if not isinstance(exc, PublishFailed):
            raise
        raise Problem(
            503,
            "broker-unavailable",
            "Events not accepted",
            f"{exc}; send them again with the same event ids after Retry-After seconds",
            headers={"Retry-After": RETRY_AFTER},
        ) from None
    published = fresh_records if refusal is None else []
    return EventsAccepted(accepted=len(published), event_ids=[r["event_id"] for r in published], duplicates=duplicates)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EventsAccepted,
    responses=responses(401, 403, 413, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/EventIn"},
                            {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/EventIn"},
                                "minItems": 1,
                                "maxItems": MAX_EVENTS_PER_REQUEST,
                            },
                        ]
                    }
                }
            },
        }
    },
)
async def post_events(
    principal: EventsSend,
    dedup: Annotated[EventIdDedup, Depends(get_event_dedup)],
    publisher: Annotated[EventPublisher, Depends(get_publisher)],
    body: Annotated[Any, Body(description="One event, or a JSON array of up to 1,000 events.")],
    _: Annotated[None, Depends(BodyLimit(BODY_LIMIT))],
) -> EventsAccepted:
    """Answers once the broker acknowledged every accepted event, so 202 means durably queued."""
    return await accept_events(principal.org_id, _parse(body), dedup, publisher, isinstance(body, list))
