"""The embedded schema registry, served in the Confluent REST shape for standard Kafka clients.

Only mounted when SCHEMA_REGISTRY_URL is unset. A client (e.g. confluent-kafka's AvroSerializer)
pointed at `<api>/schema-registry` can register DripPulse's own .avsc files and gets the same ids the
workers use; any other schema is refused with 409, since nothing would be able to read it.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from streams.schema_registry import EmbeddedRegistry, UnknownSchemaError

router = APIRouter(prefix="/schema-registry", tags=["schema registry (embedded)"])
_registry = EmbeddedRegistry()
_MEDIA = "application/vnd.schemaregistry.v1+json"


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message}, status_code=status, media_type=_MEDIA)


@router.post("/subjects/{subject}/versions")
@router.post("/subjects/{subject}")
async def register(subject: str, request: Request) -> JSONResponse:
    body: dict[str, Any] = orjson.loads(await request.body())
    if body.get("schemaType", "AVRO") != "AVRO":
        return _error(422, 42201, "only AVRO schemas are served here")
    try:
        schema = orjson.loads(body["schema"])
        schema_id = _registry.register(subject, schema)
    except (KeyError, ValueError, UnknownSchemaError) as exc:
        return _error(409, 409, f"incompatible schema: {exc}")
    return JSONResponse(
        {"id": schema_id, "subject": subject, "version": 1, "schema": body["schema"]}, media_type=_MEDIA
    )


@router.get("/schemas/ids/{schema_id}")
async def schema_by_id(schema_id: int) -> JSONResponse:
    try:
        schema = _registry.schema_by_id(schema_id)
    except UnknownSchemaError as exc:
        return _error(404, 40403, str(exc))
    return JSONResponse({"schema": orjson.dumps(schema).decode(), "schemaType": "AVRO"}, media_type=_MEDIA)
