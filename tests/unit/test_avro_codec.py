"""The compiled Avro codec against fastavro, the reference, on every schema we ship."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.execution import Execution, ExecutionStatus
from streams import topics
from streams.runtime.avro_codec import UnsupportedSchemaError, compile_decoder, compile_encoder
from streams.runtime.schema_registry import UnknownSchemaError, embedded_schema_id, load_schema, schema_stems
from streams.runtime.serde import AvroSerde, DecodeError

SCHEMAS = schema_stems()
HEADER = b"\x00\x01\x02\x03\x04"


def values(schema: Any, named: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Any value the schema admits."""
    if isinstance(schema, list):
        return st.one_of(*(values(branch, named) for branch in schema))
    if isinstance(schema, str) and schema in named:
        return values(named[schema], named)
    kind = schema["type"] if isinstance(schema, dict) else schema
    simple: dict[str, st.SearchStrategy[Any]] = {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(-(2**31), 2**31 - 1),
        "long": st.integers(-(2**63), 2**63 - 1),
        "double": st.floats(allow_nan=False),
        "string": st.text(),
        "bytes": st.binary(),
    }
    if kind in simple:
        return simple[kind]
    if kind == "enum":
        named[schema["name"]] = schema
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(values(schema["items"], named), max_size=4)
    if kind == "map":
        return st.dictionaries(st.text(), values(schema["values"], named), max_size=4)
    assert kind == "record", schema
    named[schema["name"]] = schema
    fields = {field["name"]: values(field["type"], named) for field in schema["fields"]}
    return st.fixed_dictionaries(fields)


def fastavro_bytes(schema: Any, record: Any) -> bytes:
    buffer = io.BytesIO(HEADER)
    buffer.seek(len(HEADER))
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), record)
    return buffer.getvalue()


@pytest.mark.parametrize("stem", SCHEMAS)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_compiled_codec_equals_fastavro(stem: str, data: st.DataObject) -> None:
    schema = load_schema(stem)
    record = data.draw(values(schema, {}))
    expected = fastavro_bytes(schema, record)
    assert compile_encoder(schema)(record, HEADER) == expected
    assert compile_encoder(schema, from_attributes=True)(SimpleNamespace(**record), HEADER) == expected
    reference = fastavro.schemaless_reader(io.BytesIO(expected[len(HEADER) :]), fastavro.parse_schema(schema), None)
    assert compile_decoder(schema)(expected, len(HEADER)) == (reference, len(expected))


def serde(stem: str, registry: Any = None) -> AvroSerde:
    topic = next(t for t in topics.ALL_TOPICS if t.schema == stem)
    return AvroSerde(topic, f"test.{topic.base_name}", registry or _Registry())


class _Registry:
    """Our schemas plus any older versions a test adds, as a real registry would hold them."""

    def __init__(self, *older: dict[str, Any]) -> None:
        self.by_id = {embedded_schema_id(load_schema(stem)): load_schema(stem) for stem in SCHEMAS}
        self.by_id.update({embedded_schema_id(schema): schema for schema in older})

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        return embedded_schema_id(schema)

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        if schema_id not in self.by_id:
            raise UnknownSchemaError(f"schema id {schema_id} is not registered")
        return self.by_id[schema_id]


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_a_cut_or_padded_record_is_a_decode_error_never_a_wrong_record(data: st.DataObject) -> None:
    codec = serde("inbound_event")
    encoded = codec.encode(data.draw(values(load_schema("inbound_event"), {})))
    cut = data.draw(st.integers(5, len(encoded) - 1))
    with pytest.raises(DecodeError):
        codec.decode(encoded[:cut])
    with pytest.raises(DecodeError, match="bytes"):
        codec.decode(encoded + data.draw(st.binary(min_size=1, max_size=3)))


def test_a_field_left_out_takes_its_default_as_with_fastavro() -> None:
    schema = load_schema("inbound_event")
    record = {"event_id": "e-1", "org_id": "org-1", "event_type": "LEAD_CREATED", "occurred_at_ms": 1}
    assert compile_encoder(schema)(record, HEADER) == fastavro_bytes(schema, record)


def test_blocks_with_byte_sizes_are_read() -> None:
    """Other writers (Java's BlockingBinaryEncoder) may send a negative count and the block's size."""
    schema = {"type": "map", "values": "int"}
    body = b"\x03" + b"\x08" + b"\x02a\x02" + b"\x02b\x04" + b"\x02" + b"\x02c\x06" + b"\x00"
    assert compile_decoder(schema)(body, 0) == ({"a": 1, "b": 2, "c": 3}, len(body))


def test_a_record_of_an_older_schema_version_is_resolved_against_ours() -> None:
    current = load_schema("execution")
    later = {"logs": [], "decisions": [], "trigger": "event", "timeline": [], "paused_step": "", "due_at_ms": None}
    older = dict(current, fields=[f for f in current["fields"] if f["name"] not in later])
    registry = _Registry(older)
    record = {f["name"]: 0 if f["type"] in ("int", "long") else "" for f in older["fields"]}
    record |= {"score_breakdown": {"fit": 10}, "actions": ["crm.update_lead"]}
    body = fastavro_bytes(older, record)[len(HEADER) :]
    wire = b"\x00" + embedded_schema_id(older).to_bytes(4, "big") + body
    assert serde("execution", registry).decode(wire) == record | later


@pytest.mark.parametrize(
    "schema",
    [
        ["null", "string", "int"],
        {"type": "fixed", "name": "Digest", "size": 16},
        {"type": "long", "logicalType": "timestamp-millis"},
        {"type": "record", "name": "R", "fields": [{"name": "at", "type": {"type": "int", "logicalType": "date"}}]},
        {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]},
    ],
)
def test_a_schema_beyond_what_is_compiled_is_refused_when_built(schema: Any) -> None:
    with pytest.raises(UnsupportedSchemaError):
        compile_encoder(schema)
    with pytest.raises(UnsupportedSchemaError):
        compile_decoder(schema)


def test_a_block_count_beyond_the_bytes_left_is_refused_at_once() -> None:
    schema = {"type": "array", "items": "string"}
    huge_count = b"\xfe\xff\xff\xff\xff\xff\xff\xff\x7f"
    with pytest.raises(ValueError, match="items in"):
        compile_decoder(schema)(huge_count + b"\x00", 0)


def test_a_named_type_used_twice_is_written_as_fastavro_writes_it() -> None:
    point = {"type": "record", "name": "Point", "namespace": "geo", "fields": [{"name": "x", "type": "long"}]}
    schema = {
        "type": "record",
        "name": "Line",
        "namespace": "geo",
        "fields": [{"name": "start", "type": point}, {"name": "end", "type": ["null", "Point"]}],
    }
    record = {"start": {"x": -3}, "end": {"x": 2**40}}
    encoded = fastavro_bytes(schema, record)
    assert compile_encoder(schema)(record, HEADER) == encoded
    assert compile_decoder(schema)(encoded, len(HEADER)) == (record, len(encoded))


def test_an_execution_is_encoded_from_its_attributes_as_from_its_record() -> None:
    """The qualifier writes Execution objects as they are; the record form is what readers get back."""
    execution = Execution(
        execution_id="00000000-0000-0000-0000-000000000001",
        org_id="org-1",
        workflow_id="wf-1",
        workflow_version=3,
        event_id="evt-1",
        event_type="lead.created",
        lead_id="lead-1",
        event_occurred_at_ms=1_764_288_000_000,
    )
    execution.status = ExecutionStatus.FILTERED_OUT
    execution.score_breakdown = {"rule": 5}
    execution.decisions = ["0:filter:fail"]
    execution.evaluated_at_ms = 1_764_288_000_123
    executions = serde("execution")
    record = {**execution.as_record(), "evaluated_at_ms": execution.evaluated_at_ms}
    assert executions.encode_attributes(execution) == executions.encode(record)
    assert executions.decode(executions.encode_attributes(execution)) == record


def test_a_field_named_like_a_python_keyword_is_read_as_an_attribute() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "from", "type": "string"}]}
    record = {"from": "a"}
    encoded = compile_encoder(schema, from_attributes=True)(SimpleNamespace(**record), HEADER)
    assert encoded == fastavro_bytes(schema, record)
