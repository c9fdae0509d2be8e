"""The orchestrator as a faust-streaming app: one agent on drip.orchestrator.inbox, one
changelog-backed table of held executions, and timers.

Why faust here and not the batch loop: this is low-volume, long-lived state that must survive the
process; faust's table is rebuilt from its changelog topic when a process restarts or takes over a
partition, and the table is partitioned like the inbox, so the process that owns an inbox
partition holds exactly that partition's executions. Several orchestrators split the partitions.

- The agent takes inbox messages (suspensions and exits from the qualifier, and the markers this
  process puts at the end of each partition it takes over) in batches; one that cannot be decoded
  goes to the dead-letter topic with the reason.
- The due timer finds held executions whose wait ended or whose approval timed out.
- The decision poll finds approvals of the owned partitions decided in PostgreSQL.
- With a ClickHouse server, the schedule timer runs scheduled workflows (schedules.py).
Each turns what it found into signals for the `Orchestrator`, produces the outputs, waits for the
broker's acknowledgement, then settles (orchestrator.py says why in that order). One lock makes the
three take turns, so no signal is planned against a table another one is about to change.

The table is written as faust writes it for an agent's current event (`send_changelog` with the
partition), but by whoever settles: a timer has no current event, and `take_events` hands over many.
With `single_record_batches` every changelog record is a batch of its own: the embedded broker
reports a partition's end as its last batch's first offset plus one, and faust's table recovery
reads up to that end, so the rest of a larger last batch would be missed after a restart.
The changelog is flushed before PostgreSQL and Redis are written, so a decision marked resumed is
never undone in the table by a crash.

After a takeover, due times and decisions of a partition wait until the agent has handled the inbox
backlog the previous owner left (inbox_backlog.py): it may hold exits that came first, and the
suspensions whose table writes a crash lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import faust
from confluent_kafka import KafkaException, Producer
from faust.tables.table import Table

from streams.orchestrator.approval_ledger import ApprovalLedger
from streams.orchestrator.inbox_backlog import MARK, InboxBacklog, put_markers
from streams.orchestrator.orchestrator import Held, HeldExecutions, Orchestrator, Signal
from streams.orchestrator.schedules import SCHEDULE_TICK_S, ScheduleRunner
from streams.runtime.kafka import KafkaConfig, deliver_all
from streams.runtime.readiness import ReadyFile
from streams.runtime.records import ConsumedRecord, OutputRecord
from streams.runtime.serde import AvroSerde, DecodeError

log = logging.getLogger(__name__)

BATCH = 1000
BATCH_WINDOW_S = 0.02
DUE_TICK_S = 0.05
DECISION_POLL_S = 0.2
_OUTCOME_OF_STATUS = {"approved": "approved", "rejected": "rejected", "timed_out": "timed_out", "cancelled": "exited"}


class TableHeld(HeldExecutions):
    """The faust table as `HeldExecutions`: bytes keys and values, written with their partition."""

    def __init__(self, table: Table[bytes, bytes]) -> None:
        self._table = table

    def get(self, execution_id: str) -> bytes | None:
        value: bytes | None = self._table.data.get(execution_id.encode())
        return value

    def hold(self, partition: int, execution_id: str, held: bytes) -> None:
        key = execution_id.encode()
        self._table.send_changelog(partition, key, held)
        self._table.data[key] = held

    def release(self, partition: int, execution_id: str) -> None:
        key = execution_id.encode()
        self._table.send_changelog(partition, key, None, value_serializer="raw")
        self._table.data.pop(key, None)

    def all(self) -> list[bytes]:
        return list(self._table.data.values())


def build_app(
    app_id: str,
    kafka: KafkaConfig,
    inbox_topic: str,
    inbox: AvroSerde,
    orchestrator: Orchestrator,
    ledger: ApprovalLedger,
    producer: Producer,
    now_ms: Callable[[], int],
    data_dir: Path,
    single_record_batches: bool,
    ready: ReadyFile | None = None,
    schedules: ScheduleRunner | None = None,
) -> faust.App:
    app = faust.App(
        app_id,
        broker=f"kafka://{kafka.bootstrap_servers}",
        store="memory://",
        datadir=str(data_dir),
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication,
        table_standby_replicas=0,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=0.5,
        producer_acks=-1,
        producer_max_batch_size=1 if single_record_batches else 16384,
    )
    topic = app.topic(inbox_topic, key_serializer="raw", value_serializer="raw", partitions=kafka.partitions)
    table = cast(
        "Table[bytes, bytes]",
        app.Table("held", default=None, partitions=kafka.partitions, key_type=bytes, value_type=bytes),
    )
    held = TableHeld(table)
    backlog = InboxBacklog()
    turn = asyncio.Lock()

    def owned() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == inbox_topic}

    async def act(signals: Sequence[Signal], dead_letters: Sequence[OutputRecord] = ()) -> None:
        """Plans, produces and waits for the broker, then settles. Call holding `turn`."""
        if not signals and not dead_letters:
            return
        loop = asyncio.get_running_loop()
        effects = orchestrator.handle(signals, held, now_ms())
        effects.outputs.extend(dead_letters)
        await loop.run_in_executor(None, deliver_all, producer, effects.outputs)
        orchestrator.settle_table(effects)
        await app.producer.flush()
        await loop.run_in_executor(None, orchestrator.settle_stores, effects)

    @table.on_recover
    async def reindex() -> None:
        """After every rebalance: the due times of what this process now holds, and its inbox backlog.
        Under the turn lock, so the due timer never sees the index half rebuilt."""
        async with turn:
            mine = owned()
            entries = []
            for value in held.all():
                current = Held.from_json(value)
                if current.partition in mine:
                    suspension = current.suspension
                    entries.append((suspension.due_at_ms, suspension.execution_id, current.partition))
            orchestrator.due.rebuild(entries)
            try:
                markers = await asyncio.get_running_loop().run_in_executor(
                    None, put_markers, producer, inbox_topic, inbox, sorted(mine), now_ms()
                )
            except KafkaException as exc:
                log.warning("cannot mark the end of the inbox backlog (%s); holding the partitions back", exc)
                markers = dict.fromkeys(mine, "")
            backlog.taken_over(markers, now_ms())
        log.info("orchestrator holds %d paused executions on partitions %s", len(entries), sorted(mine))
        if ready is not None:
            ready.owns_partitions("orchestrator")

    @app.agent(topic)
    async def on_inbox(stream: Any) -> None:
        async for events in stream.take_events(BATCH, within=BATCH_WINDOW_S):
            signals = []
            dead_letters = []
            markers = []
            for event in events:
                message = event.message
                source = ConsumedRecord(inbox_topic, message.partition, message.offset, message.key, message.value)
                try:
                    record = inbox.decode(event.value)
                except DecodeError as exc:
                    dead_letters.append(orchestrator.dead_letter(source, "decode", str(exc)))
                    continue
                if record["kind"] == MARK:
                    markers.append((message.partition, str(record["execution_id"])))
                else:
                    signals.append(Signal.from_inbox(source, record))
            async with turn:
                await act(signals, dead_letters)
                for partition, token in markers:
                    backlog.reached(partition, token)

    @app.timer(DUE_TICK_S)  # type: ignore[untyped-decorator]
    async def fire_due() -> None:
        """Waits that ended and approvals that timed out, as DUE signals for the held executions;
        not before the inbox backlog of their partition is handled (inbox_backlog.py)."""
        async with turn:
            mine = owned()
            signals = []
            now = now_ms()
            for due_at_ms, execution_id, partition in orchestrator.due.pop_due(now, BATCH, backlog.behind(now)):
                stored = held.get(execution_id) if partition in mine else None
                if stored is None:
                    continue
                suspension = Held.from_json(stored).suspension
                if due_at_ms < suspension.due_at_ms:
                    continue
                outcome = "wait_elapsed" if suspension.kind == "wait" else "timed_out"
                org_id = str(suspension.execution["org_id"])
                signals.append(
                    Signal(partition, "DUE", org_id, execution_id, outcome=outcome, outcome_at_ms=suspension.due_at_ms)
                )
            await act(signals)

    @app.timer(DECISION_POLL_S)  # type: ignore[untyped-decorator]
    async def poll_decisions() -> None:
        """Approvals of the owned partitions decided in PostgreSQL and not acted on yet; not before
        the partition's inbox backlog is handled, which may hold the suspension itself."""
        async with turn:
            loop = asyncio.get_running_loop()
            caught_up = owned() - backlog.behind(now_ms())
            decisions = await loop.run_in_executor(None, ledger.undelivered, sorted(caught_up), BATCH)
            signals = [
                Signal(
                    decision.partition,
                    "DECIDED",
                    decision.org_id,
                    decision.execution_id,
                    outcome=_OUTCOME_OF_STATUS[decision.status],
                    actor=decision.decided_by,
                    note=decision.comment,
                    outcome_at_ms=decision.decided_at_ms,
                )
                for decision in decisions
            ]
            await act(signals)

    if schedules is not None:

        @app.timer(SCHEDULE_TICK_S)  # type: ignore[untyped-decorator]
        async def fire_schedules() -> None:
            await asyncio.get_running_loop().run_in_executor(None, schedules.tick, now_ms())

    return app
