"""Learned lead models in PostgreSQL: the trainer's checkpoints, and the current model as scoring
reads it.

`ModelStore` is the trainer's. A checkpoint is one transaction holding a new version of every model
that learned since the last one and the input offsets that state covers, so a model and the events
it has seen can never disagree: a restarted trainer (or the next owner of a partition) loads the
latest versions and reads on from exactly those offsets, and nothing is learned twice or lost. The
offsets are compared and set, so a trainer that lost its partitions without knowing it (a zombie)
cannot overwrite what their new owner wrote: its checkpoint fails with `Fenced`.

`LeadModels` is what the qualifier (and the API's scoring) holds: each org's current `Weights`,
cached and checked against the org's latest version at most every `refresh_s`, like a workflow
definition against the org's revision (streams/state/control_plane.py). Never a query per event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import orjson
from sqlalchemy import Connection, Engine, text

from processors.learned_model import LearnedModel, Weights
from streams.state.control_plane import RevisionCache

TopicPartition = tuple[str, int]


class Fenced(RuntimeError):
    """Another trainer checkpointed these partitions or models since this one read them."""


@dataclass(frozen=True)
class Checkpoint:
    models: Mapping[str, tuple[int, LearnedModel]]
    """org -> (its new version, the model)."""
    offsets: Mapping[TopicPartition, int]
    """The next offset to read in each partition that moved."""
    expected: Mapping[TopicPartition, int | None]
    """What this trainer last read or wrote for them (None: nothing stored yet)."""


class ModelStore:
    def __init__(self, engine: Engine, consumer_group: str, kept_versions: int) -> None:
        self._engine = engine
        self._group = consumer_group
        self._kept = kept_versions

    def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The next offset of each partition as of the last checkpoint; absent: never checkpointed."""
        wanted = set(partitions)
        with self._engine.connect() as connection:
            rows = connection.execute(
                text("SELECT topic, partition, next_offset FROM model_trainer_offsets WHERE consumer_group = :g"),
                {"g": self._group},
            )
            return {(t, int(p)): int(o) for t, p, o in rows if (t, int(p)) in wanted}

    def latest(self, org_ids: list[str]) -> dict[str, tuple[int, LearnedModel]]:
        """Each existing org's latest model (version 0 and a new model when it has none); an org
        the control plane does not know is absent, and nothing is learned for it."""
        with self._engine.connect() as connection:
            known = connection.execute(
                text("SELECT id FROM organizations WHERE id = ANY(:ids)"), {"ids": org_ids}
            ).scalars()
            found = {str(org_id): (0, LearnedModel()) for org_id in known}
            rows = connection.execute(
                text(
                    "SELECT DISTINCT ON (org_id) org_id, version, trained_on, weights, state FROM lead_models "
                    "WHERE org_id = ANY(:ids) ORDER BY org_id, version DESC"
                ),
                {"ids": list(found)},
            )
            for org_id, version, trained_on, weights, state in rows:
                found[org_id] = (int(version), LearnedModel.from_json(int(trained_on), weights, state))
        return found

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        with self._engine.begin() as connection:
            for (topic, partition), offset in checkpoint.offsets.items():
                self._move(connection, topic, partition, offset, checkpoint.expected.get((topic, partition)))
            for org_id, (version, model) in checkpoint.models.items():
                inserted = connection.execute(
                    text(
                        "INSERT INTO lead_models (org_id, version, trained_on, weights, state, metrics) "
                        "VALUES (:org, :version, :trained_on, CAST(:weights AS jsonb), CAST(:state AS jsonb), "
                        "CAST(:metrics AS jsonb)) ON CONFLICT DO NOTHING RETURNING version"
                    ),
                    {
                        "org": org_id,
                        "version": version,
                        "trained_on": model.trained_on,
                        "weights": orjson.dumps(model.weights_json()).decode(),
                        "state": orjson.dumps(model.state_json()).decode(),
                        "metrics": orjson.dumps(model.metrics()).decode(),
                    },
                ).first()
                if inserted is None:
                    raise Fenced(f"version {version} of org {org_id}'s model was written by another trainer")
                connection.execute(
                    text("DELETE FROM lead_models WHERE org_id = :org AND version <= :oldest"),
                    {"org": org_id, "oldest": version - self._kept},
                )

    def _move(self, connection: Connection, topic: str, partition: int, offset: int, expected: int | None) -> None:
        params = {"g": self._group, "t": topic, "p": partition, "o": offset, "e": expected}
        if expected is None:
            moved = connection.execute(
                text(
                    "INSERT INTO model_trainer_offsets (consumer_group, topic, partition, next_offset) "
                    "VALUES (:g, :t, :p, :o) ON CONFLICT DO NOTHING RETURNING 1"
                ),
                params,
            ).first()
        else:
            moved = connection.execute(
                text(
                    "UPDATE model_trainer_offsets SET next_offset = :o, updated_at = now() "
                    "WHERE consumer_group = :g AND topic = :t AND partition = :p AND next_offset = :e RETURNING 1"
                ),
                params,
            ).first()
        if moved is None:
            raise Fenced(f"{topic}[{partition}] was checkpointed by another trainer")


class _LatestVersions:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def revisions(self, org_ids: list[str]) -> dict[str, int]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                text("SELECT org_id, max(version) FROM lead_models WHERE org_id = ANY(:ids) GROUP BY org_id"),
                {"ids": org_ids},
            )
            return {org_id: int(version) for org_id, version in rows}

    def weights(self, org_ids: list[str]) -> dict[str, Weights | None]:
        found: dict[str, Weights | None] = dict.fromkeys(org_ids)
        with self._engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT DISTINCT ON (org_id) org_id, version, trained_on, weights FROM lead_models "
                    "WHERE org_id = ANY(:ids) ORDER BY org_id, version DESC"
                ),
                {"ids": org_ids},
            )
            for org_id, version, trained_on, weights in rows:
                found[org_id] = Weights.from_json(int(version), int(trained_on), weights)
        return found


class LeadModels:
    """Each org's current model for scoring; None while it has none."""

    def __init__(self, engine: Engine, refresh_s: float) -> None:
        versions = _LatestVersions(engine)
        self._cache: RevisionCache[Weights | None] = RevisionCache(versions, versions.weights, refresh_s)

    def current(self, org_ids: Iterable[str]) -> dict[str, Weights | None]:
        return self._cache.get(org_ids)
