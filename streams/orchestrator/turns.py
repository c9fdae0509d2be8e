"""How the orchestrator app turns a batch of signals into what they do, and what it does when a step
fails.

A turn plans (`Orchestrator.handle`), produces the outputs and waits for the broker, then settles
Redis and PostgreSQL, then the table. A step that fails because a store or the broker is down is
tried again, backing off, until it holds (`until_it_holds`): the turn waits for the store, and drops
nothing. Any other error (a value PostgreSQL refuses, a constraint, a record the producer refuses, a
defect) would fail the same way however often it is tried, and the turn lock would be held for
ever: so the turn is tried again in halves, as the ClickHouse sink halves a batch, down to the one
signal that fails, which is set aside as a signal that cannot be handled (its inbox record
dead-lettered with the reason, its decision or due time tried again a minute later), and the rest
goes on. Every step is idempotent, so the outputs a half produces again carry the same ids.

A turn whose partition another process took over meanwhile is `Fenced`: nothing of it was written,
and it goes on without that partition's signals, whose inbox records the caller leaves
unacknowledged for the new owner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from confluent_kafka import KafkaException

from streams.orchestrator.approval_ledger import Fenced
from streams.orchestrator.orchestrator import UNAVAILABLE, Effects, HeldExecutions, Orchestrator, Signal
from streams.runtime.kafka import DeliveryFailed
from streams.runtime.records import OutputRecord

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.25
MAX_BACKOFF_S = 10.0
T = TypeVar("T")


def store_down(exc: Exception) -> bool:
    return isinstance(exc, UNAVAILABLE)


def broker_down(exc: Exception) -> bool:
    """The broker did not acknowledge (it is down or slow), or the producer failed for good, which
    only a restart mends. A record the producer refuses at once (too large, say) is the record's
    fault, not the broker's."""
    return isinstance(exc, DeliveryFailed) or (isinstance(exc, KafkaException) and exc.args[0].fatal())


def any_error(exc: Exception) -> bool:
    return True


async def until_it_holds(
    what: str, step: Callable[[], Awaitable[T]], passes: Callable[[Exception], bool] = store_down
) -> T:
    """`step` again and again while it fails for a reason that `passes` (a store that is down),
    backing off from 0.25 s to 10 s; any other error is raised at once, as trying again would fail
    the same way. Every step of a turn is idempotent, so trying one again is always safe."""
    backoff = FIRST_BACKOFF_S
    while True:
        try:
            return await step()
        except Exception as exc:
            if not passes(exc):
                raise
            log.warning(
                "orchestrator: %s failed (%s: %s); trying again in %.2f s", what, type(exc).__name__, exc, backoff
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)


class Turns:
    def __init__(
        self,
        orchestrator: Orchestrator,
        held: HeldExecutions,
        deliver: Callable[[Sequence[OutputRecord]], None],
        now_ms: Callable[[], int],
    ) -> None:
        self._orchestrator = orchestrator
        self._held = held
        self._deliver = deliver
        """Produces records and returns once the broker acknowledged them all (blocking)."""
        self._now_ms = now_ms

    async def act(self, signals: Sequence[Signal]) -> frozenset[int]:
        """Does what `signals` say, setting aside the one a turn cannot get past. Returns the inbox
        partitions whose signals were given up because another process took them over: their
        inbox records must stay unacknowledged. Call holding the app's turn lock."""
        orchestrator = self._orchestrator
        lost = frozenset({s.partition for s in signals} - orchestrator.holding())
        mine = [s for s in signals if s.partition not in lost]
        try:
            await self._turn(mine)
        except Fenced as fenced:
            log.warning("%s; abandoning their part of the turn", fenced)
            orchestrator.let_go(fenced.partitions)
            return lost | await self.act(mine)
        except Exception as exc:
            if len(mine) == 1:
                await self.produce_or_drop(orchestrator.set_aside(mine[0], exc, self._now_ms()))
                return lost
            log.warning("a turn of %d signals failed (%s: %s); trying its halves", len(mine), type(exc).__name__, exc)
            half = len(mine) // 2
            return lost | await self.act(mine[:half]) | await self.act(mine[half:])
        return lost

    async def produce_or_drop(self, letters: Sequence[OutputRecord]) -> None:
        """Dead letters, again while the broker is down; ones the producer refuses are logged and
        dropped, as nothing else can be done with them."""
        if not letters:
            return
        try:
            await until_it_holds("producing dead letters", lambda: self._produce(letters), broker_down)
        except Exception as exc:
            log.error("dropping %d dead letters the producer refuses (%s: %s)", len(letters), type(exc).__name__, exc)

    async def _turn(self, signals: Sequence[Signal]) -> None:
        """Plans, produces and waits for the broker, then settles; each step again while a store is
        down."""
        if not signals:
            return
        orchestrator = self._orchestrator

        async def plan() -> Effects:
            return orchestrator.handle(signals, self._held, self._now_ms())

        effects = await until_it_holds("planning a turn", plan)
        await until_it_holds("producing a turn's outputs", lambda: self._produce(effects.outputs), broker_down)
        await until_it_holds(
            "settling a turn in Redis and PostgreSQL",
            lambda: asyncio.get_running_loop().run_in_executor(None, orchestrator.settle_stores, effects),
        )
        orchestrator.settle_table(effects)

    def _produce(self, records: Sequence[OutputRecord]) -> Awaitable[None]:
        return asyncio.get_running_loop().run_in_executor(None, self._deliver, records)
