"""The records a processor sees: plain values the runtime copies out of the Kafka client's messages,
so no client type reaches a processor (a test builds them directly), and what a processor returns.

Compiled with the hot path (Makefile, HOT_PATH): the qualifier reads these attributes per event."""

from __future__ import annotations

OutputRecord = tuple[str, bytes, bytes]
"""(topic, key, value). A plain tuple: the qualifier makes four per event, and a NamedTuple costs
six times as much to build (220 against 37 ns)."""


class ConsumedRecord:
    """One input record: where it was (for the commit, a rewind and a dead letter) and its bytes."""

    __slots__ = ("key", "offset", "partition", "topic", "value")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
