"""Schema evolution: every schema is BACKWARD compatible with its released versions (its readers
decode what they wrote), and a changed .avsc cannot ship without being released to history."""

from __future__ import annotations

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import topics
from streams.runtime.schema_registry import (
    EmbeddedRegistry,
    embedded_schema_id,
    load_schema,
    released_versions,
    schema_stems,
)
from streams.runtime.serde import AvroSerde
from tests.unit.test_avro_codec import fastavro_bytes, values

SCHEMAS = schema_stems()
TOPIC_OF = {topic.schema: topic for topic in topics.ALL_TOPICS}


@pytest.mark.parametrize("stem", SCHEMAS)
def test_the_current_schema_is_released(stem: str) -> None:
    released = released_versions(stem)
    assert released, f"schemas/avro/history/{stem}/ has no v1.avsc"
    current = embedded_schema_id(load_schema(stem))
    assert embedded_schema_id(released[-1]) == current, (
        f"{stem}.avsc changed: once it passes the compatibility test, release it as "
        f"schemas/avro/history/{stem}/v{len(released) + 1}.avsc (a copy of the current file)"
    )


@pytest.mark.parametrize("stem", SCHEMAS)
def test_no_released_version_is_changed_after_release(stem: str) -> None:
    ids = [embedded_schema_id(schema) for schema in released_versions(stem)]
    assert len(ids) == len(set(ids)), "two released versions are the same schema"


@pytest.mark.parametrize("stem", SCHEMAS)
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_current_schema_reads_every_released_version(stem: str, data: st.DataObject) -> None:
    """Backward: a record any released version wrote decodes with today's schema, through the same
    serde the workers use (the registry knows the old id; Avro resolution does the rest)."""
    serde = AvroSerde(TOPIC_OF[stem], f"drip.{stem}", EmbeddedRegistry())
    for old in released_versions(stem):
        record = data.draw(values(old, {}))
        written = fastavro_bytes(old, record)
        header = b"\x00" + embedded_schema_id(old).to_bytes(4, "big")
        decoded = serde.decode(header + written[5:])
        assert decoded.keys() == {field["name"] for field in load_schema(stem)["fields"]}
        fastavro.validate(decoded, fastavro.parse_schema(load_schema(stem)), raise_errors=True)


def test_a_record_an_earlier_build_wrote_still_decodes_after_an_upgrade() -> None:
    """Release 1 of the execution schema had no trigger, timeline or pause; release 2 added them
    with defaults. A worker of release 2 reads what release 1 left on the topic instead of
    dead-lettering it."""
    first = released_versions("execution")[0]
    registry = EmbeddedRegistry()
    serde = AvroSerde(topics.EXECUTIONS, "drip.executions", registry)

    record = {field["name"]: _sample(field["type"]) for field in first["fields"]}
    written = fastavro_bytes(first, record)
    decoded = serde.decode(b"\x00" + embedded_schema_id(first).to_bytes(4, "big") + written[5:])
    assert decoded == {**record, "trigger": "event", "timeline": [], "paused_step": "", "due_at_ms": None}
    assert registry.version_of(embedded_schema_id(first)) == 1
    assert registry.version_of(serde.schema_id) == 2


def _sample(avro_type: object) -> object:
    samples = {"string": "x", "int": 1, "long": 2}
    if isinstance(avro_type, dict):
        return {} if avro_type["type"] == "map" else []
    return samples[str(avro_type)]
