"""Dead-lettering: input a worker cannot use goes to drip.events.dlq with its reason and bytes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Message

from streams.clock import now_ms
from streams.runtime.batch_runtime import OutputRecord
from streams.runtime.serde import AvroSerde, DecodeError

log = logging.getLogger(__name__)


class DeadLetters:
    def __init__(self, serde: AvroSerde, topic: str) -> None:
        self._serde = serde
        self._topic = topic

    def record(self, message: Message, error_kind: str, error: str) -> OutputRecord:
        log.warning(
            "dead-lettering %s[%s]@%s (%s): %s",
            message.topic(),
            message.partition(),
            message.offset(),
            error_kind,
            error,
        )
        value = self._serde.encode(
            {
                "source_topic": message.topic() or "",
                "source_partition": message.partition() or 0,
                "source_offset": message.offset() or 0,
                "error_kind": error_kind,
                "error": error,
                "original_key": message.key(),
                "original_value": message.value(),
                "failed_at_ms": now_ms(),
            }
        )
        return (self._topic, message.key() or b"", value)

    def decode_batch(
        self, serde: AvroSerde, messages: Sequence[Message]
    ) -> tuple[list[dict[str, Any]], list[OutputRecord]]:
        """The batch's records that decode, and a dead letter for each that does not."""
        records: list[dict[str, Any]] = []
        dead: list[OutputRecord] = []
        for message in messages:
            try:
                records.append(serde.decode(message.value()))
            except DecodeError as exc:
                dead.append(self.record(message, "decode", str(exc)))
        return records, dead
