"""A turn that fails for any reason but a store that is down must not hold the turn lock for ever:
the signal it cannot get past is set aside, the rest goes on (streams/orchestrator/turns.py). No I/O:
the stores are the fakes of orchestrator_fakes; the broker is a list."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException

from streams import topics
from streams.orchestrator.orchestrator import RETRY_AFTER_MS, Signal
from streams.orchestrator.turns import Turns
from streams.runtime.records import ConsumedRecord, OutputRecord
from tests.unit.test_orchestrator_durability import APPROVAL, NOW, WAIT, Stores, decided, suspended
from tests.unit.test_orchestrator_recovery import serde

DEADLINE_S = 30
"""A turn that hangs fails the test instead of hanging it."""


class Broker:
    """Acknowledges every record, but refuses at once any batch holding one of `refused`'s bytes."""

    def __init__(self) -> None:
        self.records: list[OutputRecord] = []
        self.refused: set[bytes] = set()

    def deliver(self, records: Sequence[OutputRecord]) -> None:
        if any(marker in value for _, _, value in records for marker in self.refused):
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.records.extend(records)

    def letters(self) -> list[int]:
        """The source offsets of the orchestrator's dead letters."""
        dlq = serde(topics.EVENTS_DLQ)[0]
        return [dlq.decode(v)["source_offset"] for t, _, v in self.records if t == topics.EVENTS_DLQ.base_name]


def acted(stores: Stores, broker: Broker, signals: list[Signal], now: int = NOW) -> frozenset[int]:
    turns = Turns(stores.engine, stores.table, broker.deliver, lambda: now)
    return asyncio.run(asyncio.wait_for(turns.act(signals), DEADLINE_S))


def from_inbox(signal: Signal, offset: int) -> Signal:
    source = ConsumedRecord("drip.orchestrator.inbox", 0, offset, b"o", b"the record")
    return Signal(
        signal.partition, signal.kind, signal.org_id, signal.execution_id, signal.suspension_json, source=source
    )


def test_a_suspension_postgresql_refuses_to_settle_is_dead_lettered_and_the_rest_of_its_turn_settles() -> None:
    stores, broker = Stores(), Broker()
    signals = [from_inbox(suspended(APPROVAL, f"l{n}")[0], offset=n) for n in range(5)]
    stores.faults.refused.add(signals[3].execution_id)
    assert acted(stores, broker, signals) == frozenset()
    assert broker.letters() == [3], "the refused one, with its reason"
    assert set(stores.ledger.held_rows) == {s.execution_id for s in signals} - {signals[3].execution_id}
    assert len(stores.ledger.approvals) == 4


def test_a_decision_and_a_due_time_whose_turn_postgresql_refuses_wait_and_are_tried_again_later() -> None:
    stores, broker = Stores(), Broker()
    approval, held_approval = suspended(APPROVAL, "l1")
    wait, held_wait = suspended(WAIT, "l2")
    acted(stores, broker, [approval, wait])
    assert stores.ledger.decide(held_approval.approval_id, "approved", "ann@acme.io", NOW) == 200
    stores.faults.refused |= {held_approval.execution_id, held_wait.execution_id}
    due_at = held_wait.due_at_ms
    due = Signal(0, "DUE", "o", held_wait.execution_id, outcome="wait_elapsed", outcome_at_ms=due_at)
    acted(stores, broker, [decided(held_approval), due], now=due_at)
    assert stores.engine.deferred(due_at + 1) == [held_approval.execution_id]
    retry = (due_at + RETRY_AFTER_MS, held_wait.execution_id, 0)
    assert retry in stores.engine.due.pop_due(retry[0], 10), "the due time is tried again a minute later"
    assert set(stores.ledger.held_rows) == {held_approval.execution_id, held_wait.execution_id}, "nothing lost"
    stores.faults.refused.clear()
    acted(stores, broker, [decided(held_approval), due], now=due_at + RETRY_AFTER_MS)
    assert not stores.ledger.held_rows


def test_a_signal_whose_outputs_the_producer_refuses_is_set_aside_and_frees_the_turn() -> None:
    stores, broker = Stores(), Broker()
    first, second = (suspended(WAIT, lead) for lead in ("l1", "l2"))
    acted(stores, broker, [first[0], second[0]])
    broker.refused.add(first[1].execution_id.encode())
    dues = [
        Signal(0, "DUE", "o", s.execution_id, outcome="wait_elapsed", outcome_at_ms=s.due_at_ms)
        for _, s in (first, second)
    ]
    acted(stores, broker, dues, now=first[1].due_at_ms)
    assert set(stores.ledger.held_rows) == {first[1].execution_id}, "the other one resumed and ended"


def test_a_turn_of_a_partition_another_process_took_over_is_given_up_for_that_partition_only() -> None:
    stores, broker = Stores(), Broker()
    stores.engine.recover(stores.table, [0, 1], NOW)
    mine, theirs = suspended(WAIT, "l1")[0], suspended(WAIT, "l2")[0]
    theirs = Signal(1, theirs.kind, theirs.org_id, theirs.execution_id, theirs.suspension_json)
    other = stores.started()
    other.recover(stores.table.restarted(), [1], NOW)
    assert acted(stores, broker, [mine, theirs]) == {1}
    assert set(stores.ledger.held_rows) == {mine.execution_id}
    assert stores.engine.holding() == {0}
