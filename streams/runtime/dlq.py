"""Dead-lettering: input a worker cannot use goes to drip.events.dlq with its reason and bytes.

Each consumer group that cannot use a record writes its own dead letter, naming itself: an
undecodable inbound event is dead-lettered by the qualifier and by the inbound-history sink, and an
operator sees which consumer refused what (and replays it to the ones that need it)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from streams.clock import now_ms
from streams.runtime.records import ConsumedRecord, OutputRecord
from streams.runtime.serde import AvroSerde, DecodeError

log = logging.getLogger(__name__)


class DeadLetters:
    def __init__(self, serde: AvroSerde, topic: str, consumer_group: str) -> None:
        self._serde = serde
        self._topic = topic
        self._consumer_group = consumer_group

    def record(self, record: ConsumedRecord, error_kind: str, error: str) -> OutputRecord:
        log.warning(
            "%s: dead-lettering %s[%s]@%s (%s): %s",
            self._consumer_group,
            record.topic,
            record.partition,
            record.offset,
            error_kind,
            error,
        )
        value = self._serde.encode(
            {
                "source_topic": record.topic,
                "source_partition": record.partition,
                "source_offset": record.offset,
                "error_kind": error_kind,
                "error": error,
                "original_key": record.key,
                "original_value": record.value,
                "failed_at_ms": now_ms(),
                "consumer_group": self._consumer_group,
            }
        )
        return (self._topic, record.key or b"", value)

    def refused(self, topic: str, key: bytes, value: bytes | None, error_kind: str, error: str) -> OutputRecord:
        """The letter of a record this worker made but will not send to `topic` (a call its agent
        refuses): it was never on the topic, so its partition and offset are -1; replaying the
        letter sends it there."""
        return self.record(ConsumedRecord(topic, -1, -1, key, value), error_kind, error)

    def decode_batch(
        self, serde: AvroSerde, batch: Sequence[ConsumedRecord]
    ) -> tuple[list[dict[str, Any]], list[OutputRecord]]:
        """The batch's records that decode, and a dead letter for each that does not."""
        decoded: list[dict[str, Any]] = []
        dead: list[OutputRecord] = []
        for record in batch:
            try:
                decoded.append(serde.decode(record.value))
            except DecodeError as exc:
                dead.append(self.record(record, "decode", str(exc)))
        return decoded, dead
