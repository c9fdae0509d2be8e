"""ModelTrainer: learns each organization's lead score from the outcomes on drip.events.inbound.

It is its own consumer group (`drippulse worker trainer`), so training never slows the qualifier:
the two read the same topic at their own pace. Per batch it keeps, in Redis, what each lead looked
like (`lead.created` / `lead.updated`), and learns from each outcome (`lead.converted` /
`lead.disqualified`) with the lead as it was before it (processors/lead_snapshots.py).

Effectively once: the models and the input offsets they cover are checkpointed together in one
PostgreSQL transaction (streams/state/lead_models.py), every `checkpoint_every` outcomes learned or
`checkpoint_s` seconds, and when partitions are taken away (a rebalance, a shutdown). When it is
given a partition, the trainer seeks to the offset of the last checkpoint rather than to Kafka's
committed offset (which the batch runtime still commits, for lag monitoring), and resumes the
latest checkpointed models; what it had learned since is learned again, exactly once. Every step
that can fail (PostgreSQL, Redis) runs before the batch changes any model in memory, so a batch the
runtime retries is never learned twice.

Records that cannot be decoded or validated are skipped: the qualifier dead-letters them already,
and a replayed letter reaches every consumer group, this one too.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from processors.events import DESCRIBING_LEADS, EVENT_TYPE_BY_SYMBOL, OUTCOMES, EventType, validation_problems
from processors.lead_snapshots import LeadSnapshot
from processors.learned_model import LearnedModel
from streams.runtime.records import ConsumedRecord, OutputRecord
from streams.runtime.serde import AvroSerde, DecodeError
from streams.state.lead_models import Checkpoint, Fenced, ModelStore, TopicPartition
from streams.state.lead_snapshot_store import LeadKey, LeadSnapshotStore

log = logging.getLogger(__name__)


POSITIONS_PATIENCE_S = 120.0


class Stale(RuntimeError):
    """A checkpoint was fenced: this trainer waits for the group to give it partitions again."""


@dataclass(frozen=True)
class TrainerConfig:
    checkpoint_every: int
    checkpoint_s: float
    unknown_org_retry_s: float
    """How long events of an org the control plane does not know are skipped before it is asked again."""


class ModelTrainer:
    def __init__(
        self, inbound: AvroSerde, snapshots: LeadSnapshotStore, store: ModelStore, config: TrainerConfig
    ) -> None:
        self._inbound = inbound
        self._snapshots = snapshots
        self._store = store
        self._config = config
        self._models: dict[str, tuple[int, LearnedModel]] = {}
        """org -> (the version last checkpointed, 0 for none; the model, with what it learned since)."""
        self._learned_since: set[str] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int | None] = {}
        self._unknown: dict[str, float] = {}
        self._updates_since = 0
        self._checkpointed_at = time.monotonic()
        self._stale = False
        self.updates = 0
        """Outcomes learned from since this process started (for the benchmark and tests)."""

    def positions(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        """Where to read newly assigned partitions from: their last checkpoint (None: the beginning).
        Asked inside the consumer's rebalance callback, so a PostgreSQL outage is waited out here
        (the group's heartbeats go on meanwhile) for up to `POSITIONS_PATIENCE_S`."""
        deadline = time.monotonic() + POSITIONS_PATIENCE_S
        while True:
            try:
                committed = self._store.committed(partitions)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                log.warning("trainer: reading the checkpointed offsets failed; retrying", exc_info=True)
                time.sleep(1)
        for partition in partitions:
            self._committed[partition] = committed.get(partition)
        return {partition: committed.get(partition) for partition in partitions}

    def on_rebalance(self) -> None:
        """Checkpoints what this trainer learned while it still owns the partitions (on a revocation;
        on an assignment there is nothing left), then forgets it all: the next owner of a partition
        resumes from PostgreSQL, and so does this trainer if it gets it back."""
        if not self._stale:
            try:
                self.checkpoint()
            except Exception:
                log.exception("trainer: checkpoint on rebalance failed; its partitions resume from the previous one")
        self._models.clear()
        self._learned_since.clear()
        self._positions.clear()
        self._committed.clear()
        self._unknown.clear()
        self._updates_since = 0
        self._stale = False

    def process(self, records: Sequence[ConsumedRecord]) -> list[OutputRecord]:
        if self._stale:
            raise Stale("a checkpoint was fenced; waiting for the group to assign partitions again")
        if self._due():
            self.checkpoint()
        events = [(record, event) for record in records if (event := self._decode(record)) is not None]
        if not events:
            self._advance(records)
            return []
        self._load_models({event["org_id"] for _, event in events})
        leads: dict[str, tuple[int, set[str]]] = {}
        for record, event in events:
            if event["org_id"] in self._models:
                leads.setdefault(event["org_id"], (record.partition, set()))[1].add(event["lead"]["lead_id"])
        snapshots = self._snapshots.load(leads)
        changed: dict[LeadKey, LeadSnapshot] = {}
        examples: list[tuple[str, dict[str, Any], bool]] = []
        for record, event in events:
            org_id = event["org_id"]
            if org_id not in self._models:
                continue
            key = (org_id, event["lead"]["lead_id"])
            snapshot = snapshots.setdefault(key, LeadSnapshot(record.partition))
            event_type = event["event_type"]
            if event_type in DESCRIBING_LEADS:
                if snapshot.describe(record.offset, event["lead"], event_type == EventType.LEAD_CREATED.value):
                    changed[key] = snapshot
            else:
                before = snapshot.before(record.offset)
                if before is not None and snapshot.counts(event["event_id"], record.offset):
                    examples.append((org_id, before, OUTCOMES[event_type]))
                    changed[key] = snapshot
            if key in changed:
                # Versions older than the last checkpoint no replay needs, but the newest of them.
                snapshot.prune(self._committed.get((record.topic, record.partition)) or 0)
        self._snapshots.save(changed)
        for org_id, lead, converted in examples:
            self._models[org_id][1].learn(lead, converted)
            self._learned_since.add(org_id)
        self._updates_since += len(examples)
        self.updates += len(examples)
        self._advance(records)
        return []

    def checkpoint(self) -> None:
        """A new version of every model that learned since the last checkpoint, and the offsets,
        in one transaction."""
        moved = {tp: offset for tp, offset in self._positions.items() if self._committed.get(tp) != offset}
        if not moved and not self._learned_since:
            self._checkpointed_at = time.monotonic()
            return
        models = {org_id: (self._models[org_id][0] + 1, self._models[org_id][1]) for org_id in self._learned_since}
        try:
            self._store.checkpoint(Checkpoint(models, moved, {tp: self._committed.get(tp) for tp in moved}))
        except Fenced:
            log.warning("trainer: checkpoint fenced; another trainer owns these partitions now", exc_info=True)
            self._stale = True
            raise
        for org_id, (version, model) in models.items():
            self._models[org_id] = (version, model)
        self._committed.update(moved)
        self._learned_since.clear()
        self._updates_since = 0
        self._checkpointed_at = time.monotonic()
        log.info("trainer: checkpointed %d models, %d partitions", len(models), len(moved))

    def _due(self) -> bool:
        if self._updates_since >= self._config.checkpoint_every:
            return True
        return time.monotonic() - self._checkpointed_at >= self._config.checkpoint_s and (
            bool(self._learned_since) or any(self._committed.get(tp) != o for tp, o in self._positions.items())
        )

    def _advance(self, records: Sequence[ConsumedRecord]) -> None:
        ends: dict[TopicPartition, int] = defaultdict(int)
        for record in records:
            key = (record.topic, record.partition)
            ends[key] = max(ends[key], record.offset + 1)
        self._positions.update(ends)

    def _load_models(self, org_ids: set[str]) -> None:
        now = time.monotonic()
        missing = [
            org_id
            for org_id in org_ids
            if org_id not in self._models and now - self._unknown.get(org_id, -1e9) >= self._config.unknown_org_retry_s
        ]
        if not missing:
            return
        found = self._store.latest(missing)
        self._models.update(found)
        for org_id in missing:
            if org_id not in found:
                self._unknown[org_id] = now

    def _decode(self, record: ConsumedRecord) -> dict[str, Any] | None:
        """Lead events this trainer learns from, as the qualifier would accept them; None for the rest."""
        try:
            event = self._inbound.decode(record.value)
        except DecodeError:
            return None
        event_type = EVENT_TYPE_BY_SYMBOL.get(event["event_type"])
        if event_type is None or (event_type.value not in DESCRIBING_LEADS and event_type.value not in OUTCOMES):
            return None
        event["event_type"] = event_type
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        if validation_problems(event, key):
            return None
        event["event_type"] = event_type.value
        return event
