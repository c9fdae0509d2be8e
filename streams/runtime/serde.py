"""Avro in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro body.

Our own schema is encoded and decoded by functions compiled from it (streams/runtime/avro_codec.py); a
record written with another schema version is decoded by fastavro, which resolves it against ours.
"""

from __future__ import annotations

import io
import struct
from functools import cached_property
from typing import Any, cast

from fastavro import parse_schema, schemaless_reader

from streams.runtime.avro_codec import Encode, compile_decoder, compile_encoder
from streams.runtime.schema_registry import SchemaRegistry, UnknownSchemaError, load_schema
from streams.topics import Topic

_HEADER = struct.Struct(">bI")


class DecodeError(ValueError):
    """The bytes are not a record this topic can carry; the message says why."""


class AvroSerde:
    """Encodes and decodes one topic's records. Records written with an older or newer compatible
    schema are resolved against ours, as Avro schema resolution defines."""

    def __init__(self, topic: Topic, topic_name: str, registry: SchemaRegistry) -> None:
        raw = load_schema(topic.schema)
        self.schema = parse_schema(raw)
        self._registry = registry
        self.schema_id = registry.register(f"{topic_name}-value", raw)
        self._header = _HEADER.pack(0, self.schema_id)
        self._raw_schema = raw
        self._encode = compile_encoder(raw)
        self._decode = compile_decoder(raw)
        self._writers: dict[int, Any] = {}

    def encode(self, record: dict[str, Any]) -> bytes:
        return self._encode(record, self._header)

    def encode_attributes(self, record: object) -> bytes:
        """Encodes an object that carries every field of the record as an attribute."""
        return self._attributes_encoder(record, self._header)

    @cached_property
    def _attributes_encoder(self) -> Encode:
        return compile_encoder(self._raw_schema, from_attributes=True)

    def decode(self, data: bytes | None) -> dict[str, Any]:
        if data is None or len(data) < _HEADER.size:
            raise DecodeError("value is empty or shorter than the 5-byte Confluent header")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != 0:
            raise DecodeError(f"magic byte is {magic}, expected 0 (Confluent wire format)")
        if schema_id == self.schema_id:
            try:
                record, end = self._decode(data, _HEADER.size)
            except Exception as exc:
                raise DecodeError(f"Avro body does not match schema id {schema_id}: {exc!r}") from exc
            if end != len(data):
                raise DecodeError(
                    f"Avro body of schema id {schema_id} is {len(data) - _HEADER.size} bytes, "
                    f"its record {end - _HEADER.size}"
                )
            return cast(dict[str, Any], record)
        writer_schema = self._writer_schema(schema_id)
        try:
            resolved = schemaless_reader(io.BytesIO(data[_HEADER.size :]), writer_schema, self.schema)
        except Exception as exc:
            raise DecodeError(f"Avro body does not match schema id {schema_id}: {exc!r}") from exc
        if not isinstance(resolved, dict):
            raise DecodeError("Avro body is not a record")
        return resolved

    def _writer_schema(self, schema_id: int) -> Any:
        """The parsed schema a record of another version was written with."""
        if schema_id in self._writers:
            return self._writers[schema_id]
        try:
            writer = parse_schema(self._registry.schema_by_id(schema_id))
        except UnknownSchemaError as exc:
            raise DecodeError(str(exc)) from exc
        self._writers[schema_id] = writer
        return writer
