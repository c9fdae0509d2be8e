"""Schema ids for the Confluent wire format, from a real registry or an embedded one.

The embedded registry needs no coordination between processes: a schema's id is a fingerprint of
its Parsing Canonical Form, so every process (and any client that registers the same .avsc through
the API's registry endpoints) arrives at the same id.

It knows every released version of every schema (`schemas/avro/history/<name>/v<N>.avsc`), not only
the current one, so records an earlier build left on a topic still decode after an upgrade: Avro
resolution reads them with the current schema. The policy that makes that safe is BACKWARD
compatibility (every version reads what the versions before it wrote); a test holds each schema to
it against its released versions, and fails when a changed .avsc has not been released to history.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Protocol

from fastavro.schema import to_parsing_canonical_form

SCHEMA_DIR: Traversable = resources.files("schemas") / "avro"
"""The wire contract, `schemas/avro/` of the repository: package data of the `schemas` package, found
through the installed package wherever it runs."""
HISTORY_DIR: Traversable = SCHEMA_DIR / "history"


class UnknownSchemaError(LookupError):
    """A record names a schema id this registry does not know; the record cannot be decoded."""


class SchemaRegistry(Protocol):
    def register(self, subject: str, schema: dict[str, Any]) -> int: ...

    def schema_by_id(self, schema_id: int) -> dict[str, Any]: ...


def schema_stems() -> list[str]:
    """The name of every current schema: its .avsc file's name without the suffix, sorted."""
    return sorted(entry.name.removesuffix(".avsc") for entry in SCHEMA_DIR.iterdir() if entry.name.endswith(".avsc"))


@cache
def load_schema(stem: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / f"{stem}.avsc").read_text())
    return schema


def released_versions(stem: str) -> list[dict[str, Any]]:
    """Every released version of a schema, oldest first (v1, v2, …)."""
    folder = HISTORY_DIR / stem
    if not folder.is_dir():
        return []
    released = {
        int(entry.name[1:].removesuffix(".avsc")): entry
        for entry in folder.iterdir()
        if entry.name.startswith("v") and entry.name.endswith(".avsc")
    }
    return [json.loads(released[number].read_text()) for number in sorted(released)]


def embedded_schema_id(schema: dict[str, Any]) -> int:
    digest = hashlib.sha256(to_parsing_canonical_form(schema).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFF_FFFF


class EmbeddedRegistry:
    """Knows exactly DripPulse's schemas, current and released; registering anything else is refused."""

    def __init__(self) -> None:
        self._by_id: dict[int, dict[str, Any]] = {}
        self._versions: dict[int, int] = {}
        for stem in schema_stems():
            for number, schema in enumerate([*released_versions(stem), load_schema(stem)], start=1):
                schema_id = embedded_schema_id(schema)
                self._by_id.setdefault(schema_id, schema)
                self._versions.setdefault(schema_id, number)

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        schema_id = embedded_schema_id(schema)
        if schema_id not in self._by_id:
            raise UnknownSchemaError(f"subject {subject!r}: schema is not one of DripPulse's schemas/avro/ files")
        return schema_id

    def version_of(self, schema_id: int) -> int:
        """The schema's version number: its place in history, or the next one for an unreleased change."""
        return self._versions[schema_id]

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise UnknownSchemaError(f"schema id {schema_id} is not registered") from None

    def known(self) -> dict[int, dict[str, Any]]:
        return dict(self._by_id)


class ConfluentRegistry:
    """A Confluent-compatible Schema Registry (SCHEMA_REGISTRY_URL), via confluent-kafka's client."""

    def __init__(self, url: str) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self._client = SchemaRegistryClient({"url": url})

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        from confluent_kafka.schema_registry import Schema

        return int(self._client.register_schema(subject, Schema(json.dumps(schema), "AVRO")))

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        try:
            found = self._client.get_schema(schema_id)
        except Exception as exc:
            raise UnknownSchemaError(f"schema id {schema_id}: {exc}") from exc
        schema: dict[str, Any] = json.loads(found.schema_str or "{}")
        return schema


def make_registry(url: str) -> SchemaRegistry:
    return ConfluentRegistry(url) if url else EmbeddedRegistry()
