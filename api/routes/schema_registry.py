"""The embedded schema registry, served in the Confluent REST shape for standard Kafka clients.

Only mounted when SCHEMA_REGISTRY_URL is unset. A client (e.g. confluent-kafka's AvroSerializer)
pointed at `<api>/schema-registry` can register DripPulse's own .avsc files and gets the same ids the
workers use; any other schema is refused with 409, since nothing would be able to read it.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import PublicRoute
from api.problems import responses
from streams.runtime.schema_registry import EmbeddedRegistry, UnknownSchemaError

router = APIRouter(prefix="/schema-registry", tags=["schema registry (embedded)"])
_registry = EmbeddedRegistry()
_MEDIA = "application/vnd.schemaregistry.v1+json"


class RegisterSchema(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    schema_text: str = Field(alias="schema", description="The Avro schema, as JSON text.")
    schemaType: str = Field(default="AVRO", description="Only AVRO is served.")


class Registered(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: int
    subject: str
    version: int
    schema_text: str = Field(alias="schema")


class SchemaById(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    schema_text: str = Field(alias="schema")
    schemaType: str


class RegistryError(BaseModel):
    error_code: int
    message: str


class RegistryResponse(JSONResponse):
    media_type = _MEDIA


def _error(status: int, code: int, message: str) -> JSONResponse:
    return RegistryResponse({"error_code": code, "message": message}, status_code=status)


_REGISTER_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"model": RegistryError, "description": "Not a DripPulse schema"},
    **responses(422),
}
_LOOKUP_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": RegistryError, "description": "Unknown id"},
    **responses(422),
}


@router.post(
    "/subjects/{subject}/versions",
    response_model=Registered,
    response_class=RegistryResponse,
    responses=_REGISTER_ERRORS,
)
@router.post(
    "/subjects/{subject}",
    response_model=Registered,
    response_class=RegistryResponse,
    responses=_REGISTER_ERRORS,
)
async def register(subject: Annotated[str, Path(max_length=255)], body: RegisterSchema, _: PublicRoute) -> JSONResponse:
    if body.schemaType != "AVRO":
        return _error(409, 409, "only AVRO schemas are served here")
    try:
        schema_id = _registry.register(subject, orjson.loads(body.schema_text))
    except (ValueError, TypeError, UnknownSchemaError) as exc:
        return _error(409, 409, f"incompatible schema: {exc}")
    registered = Registered(
        id=schema_id, subject=subject, version=_registry.version_of(schema_id), schema_text=body.schema_text
    )
    return RegistryResponse(registered.model_dump(by_alias=True))


@router.get(
    "/schemas/ids/{schema_id}",
    response_model=SchemaById,
    response_class=RegistryResponse,
    responses=_LOOKUP_ERRORS,
)
async def schema_by_id(schema_id: Annotated[int, Path(ge=0, le=2_147_483_647)], _: PublicRoute) -> JSONResponse:
    try:
        schema = _registry.schema_by_id(schema_id)
    except UnknownSchemaError as exc:
        return _error(404, 40403, str(exc))
    found = SchemaById(schema_text=orjson.dumps(schema).decode(), schemaType="AVRO")
    return RegistryResponse(found.model_dump(by_alias=True))
