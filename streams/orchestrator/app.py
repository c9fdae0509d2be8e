"""The orchestrator as a faust-streaming app: one agent on drip.orchestrator.inbox, one table of
held executions, and timers.

Why faust here and not the batch loop: this is low-volume, long-lived state, partitioned like the
inbox, so the process that owns an inbox partition holds exactly that partition's executions, and
several orchestrators split the partitions; faust brings the agent, the table and the timers.

- The agent takes inbox messages (suspensions and exits from the qualifier, and the markers this
  process puts at the end of each partition it takes over) in batches; one that cannot be decoded
  goes to the dead-letter topic with the reason.
- The due timer finds held executions whose wait ended or whose approval timed out.
- The decision poll finds approvals of the owned partitions decided in PostgreSQL.
- With a ClickHouse server, the schedule timer runs scheduled workflows (schedules.py).
Each turns what it found into signals for the `Orchestrator`, produces the outputs, waits for the
broker's acknowledgement, then settles (orchestrator.py says why in that order). One lock makes the
three take turns, so no signal is planned against a table another one is about to change.

Every step of a turn is retried while a store is down (`until_it_holds`): that holds the turn up,
it never drops it, and never crashes the worker (a crash is a rebalance). Any other error would fail
the same way again, so it must not hold the turn lock for ever: the turn is tried again in halves,
down to the one signal that fails, which is set aside as one that cannot be handled (`act`), so one
bad signal stops nothing else. A turn of a partition another process took over meanwhile is
abandoned (`Fenced`): its inbox records stay unacknowledged for the new owner. A timer that fails
logs and backs off; the due timer puts back the due times it took.

PostgreSQL (`held_executions`) is what the orchestrator holds; the table is its copy for the owned
partitions, rebuilt from PostgreSQL after every rebalance (`Orchestrator.recover`), so the broker's
changelog may be lost or lag (the embedded broker keeps topics in memory). Until a partition is
recovered in the current rebalance, no due time or decision of it is acted on: the table would not
know what it holds yet. The table is written as faust writes it for an agent's current event
(`send_changelog` with the partition), but by whoever settles: a timer has no current event, and
`take_events` hands over many. With `single_record_batches` every changelog record is a batch of its
own: the embedded broker reports a partition's end as its last batch's first offset plus one, and
faust's table recovery reads up to that end.

After a takeover, due times and decisions of a partition also wait until the agent has handled the
inbox backlog the previous owner left (inbox_backlog.py): it may hold exits that came first.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, cast

import faust
from confluent_kafka import KafkaException, Producer
from faust.tables.table import Table

from streams.orchestrator.approval_ledger import ApprovalLedger
from streams.orchestrator.inbox_backlog import MARK, InboxBacklog, put_markers
from streams.orchestrator.orchestrator import Held, HeldExecutions, Orchestrator, Signal
from streams.orchestrator.schedules import SCHEDULE_TICK_S, ScheduleRunner
from streams.orchestrator.turns import FIRST_BACKOFF_S, MAX_BACKOFF_S, Turns, any_error, until_it_holds
from streams.runtime.kafka import KafkaConfig, deliver_all
from streams.runtime.readiness import ReadyFile
from streams.runtime.records import ConsumedRecord
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

    def entries(self) -> Iterable[tuple[str, bytes]]:
        return [(key.decode(), value) for key, value in self._table.data.items()]

    def forget(self, execution_id: str) -> None:
        self._table.data.pop(execution_id.encode(), None)


class TimerGuard:
    """A timer that raises must not take the worker down: it logs, and the timer skips its ticks for a
    back-off that doubles while it keeps failing."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._backoff = 0.0
        self._until = 0.0

    async def run(self, body: Callable[[], Awaitable[None]]) -> None:
        if time.monotonic() < self._until:
            return
        try:
            await body()
        except Exception as exc:
            self._backoff = min(max(self._backoff * 2, FIRST_BACKOFF_S), MAX_BACKOFF_S)
            self._until = time.monotonic() + self._backoff
            log.warning(
                "orchestrator %s failed (%s: %s); again in %.2f s", self._name, type(exc).__name__, exc, self._backoff
            )
        else:
            self._backoff = 0.0


class Recovered:
    """The partitions whose table this process rebuilt in the current rebalance. faust goes on
    running the timers while a later rebalance recovers a newly assigned partition's table; until
    then that partition holds nothing here, and a decision or due time acted on would be lost."""

    def __init__(self, app: faust.App) -> None:
        self._app = app
        self._rebalance = -1
        self._partitions: frozenset[int] = frozenset()

    def recovered(self, rebalance: int, partitions: Iterable[int]) -> None:
        self._rebalance, self._partitions = rebalance, frozenset(partitions)

    def partitions(self) -> frozenset[int]:
        """Empty from the moment a rebalance starts until its recovery completed."""
        return self._partitions if self._rebalance == self._app.rebalancing_count else frozenset()


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
    recovered = Recovered(app)
    turn = asyncio.Lock()
    every_partition = frozenset(range(kafka.partitions))
    turns = Turns(orchestrator, held, functools.partial(deliver_all, producer), now_ms)

    def owned() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == inbox_topic}

    def acting_on(now: int) -> frozenset[int]:
        """The partitions whose due times and decisions may be acted on now: owned, recovered in this
        rebalance and not taken over by another process since, and past their inbox backlog."""
        return (recovered.partitions() & owned() & orchestrator.holding()) - backlog.behind(now)

    @table.on_recover
    async def reindex() -> None:
        """After every rebalance: the table and the due times of what this process now holds, rebuilt
        from PostgreSQL, and its inbox backlog marked. Under the turn lock, so no timer sees them
        half rebuilt."""
        async with turn:
            rebalance = app.rebalancing_count
            mine = owned()

            async def rebuild() -> int:
                return orchestrator.recover(held, mine, now_ms())

            # Nothing of these partitions may be acted on before they are recovered, so there is no
            # signal to set aside: whatever fails, recovery is tried again.
            holding = await until_it_holds("rebuilding the held executions from PostgreSQL", rebuild, any_error)
            try:
                markers = await asyncio.get_running_loop().run_in_executor(
                    None, put_markers, producer, inbox_topic, inbox, sorted(mine), now_ms()
                )
            except KafkaException as exc:
                log.warning("cannot mark the end of the inbox backlog (%s); holding the partitions back", exc)
                markers = dict.fromkeys(mine, "")
            backlog.taken_over(markers, now_ms())
            recovered.recovered(rebalance, mine)
        log.info("orchestrator holds %d paused executions on partitions %s", holding, sorted(mine))
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
            try:
                async with turn:
                    await turns.produce_or_drop(dead_letters)
                    lost = await turns.act(signals)
                    for partition, token in markers:
                        backlog.reached(partition, token)
            except asyncio.CancelledError:
                # take_events acknowledges its events however the body ends; a turn stopped before it
                # settled must leave them to be read again, so they keep a reference and never commit.
                for event in events:
                    event.message.incref()
                raise
            for event in events:
                if event.message.partition in lost:
                    event.message.incref()

    due_guard = TimerGuard("due timer")

    @app.timer(DUE_TICK_S)  # type: ignore[untyped-decorator]
    async def fire_due() -> None:
        """Waits that ended and approvals that timed out, as DUE signals for the held executions."""
        await due_guard.run(due_times)

    async def due_times() -> None:
        async with turn:
            now = now_ms()
            taken = orchestrator.due.pop_due(now, BATCH, every_partition - acting_on(now))
            try:
                signals = []
                for due_at_ms, execution_id, partition in taken:
                    stored = held.get(execution_id)
                    if stored is None:
                        continue
                    suspension = Held.from_json(stored).suspension
                    if due_at_ms < suspension.due_at_ms:
                        continue
                    outcome = "wait_elapsed" if suspension.kind == "wait" else "timed_out"
                    org_id = str(suspension.execution["org_id"])
                    signals.append(
                        Signal(
                            partition, "DUE", org_id, execution_id, outcome=outcome, outcome_at_ms=suspension.due_at_ms
                        )
                    )
                await turns.act(signals)
            except BaseException:
                for entry in taken:
                    orchestrator.due.add(*entry)
                raise

    decision_guard = TimerGuard("decision poll")

    @app.timer(DECISION_POLL_S)  # type: ignore[untyped-decorator]
    async def poll_decisions() -> None:
        """Approvals of the owned, recovered partitions decided in PostgreSQL and not acted on yet."""
        await decision_guard.run(decisions)

    async def decisions() -> None:
        async with turn:
            now = now_ms()
            found = await asyncio.get_running_loop().run_in_executor(
                None, ledger.undelivered, sorted(acting_on(now)), BATCH, orchestrator.deferred(now)
            )
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
                    approval_id=decision.approval_id,
                )
                for decision in found
            ]
            await turns.act(signals)

    if schedules is not None:
        schedule_guard = TimerGuard("schedule timer")

        async def tick() -> None:
            await asyncio.get_running_loop().run_in_executor(None, schedules.tick, now_ms())

        @app.timer(SCHEDULE_TICK_S)  # type: ignore[untyped-decorator]
        async def fire_schedules() -> None:
            await schedule_guard.run(tick)

    return app
