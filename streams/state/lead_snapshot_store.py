"""The model trainer's lead snapshots in Redis: one hash per org (`state_keys.model_leads`), read and
written with one round trip per batch each way. Writing a snapshot again is harmless: every version
in it is stamped with the offset that made it (processors/lead_snapshots.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import orjson
import redis

from processors.lead_snapshots import LeadSnapshot
from streams.state import redis_batch, state_keys

LeadKey = tuple[str, str]
"""(org_id, lead_id)."""


class LeadSnapshotStore:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def load(self, leads: Mapping[str, tuple[int, set[str]]]) -> dict[LeadKey, LeadSnapshot]:
        """Per org (its input partition, its leads): the snapshots stored; a lead never seen is absent."""
        orgs = sorted(leads)
        ordered = {org_id: sorted(leads[org_id][1]) for org_id in orgs}
        replies = redis_batch.execute(
            self._redis, [("HMGET", state_keys.model_leads(org_id), *ordered[org_id]) for org_id in orgs]
        )
        found: dict[LeadKey, LeadSnapshot] = {}
        for org_id, reply in zip(orgs, replies, strict=True):
            partition = leads[org_id][0]
            for lead_id, stored in zip(ordered[org_id], reply, strict=True):
                if stored is not None:
                    found[(org_id, lead_id)] = LeadSnapshot.from_json(orjson.loads(stored), partition)
        return found

    def save(self, snapshots: Mapping[LeadKey, LeadSnapshot]) -> None:
        by_org: dict[str, list[bytes | str]] = defaultdict(list)
        for (org_id, lead_id), snapshot in snapshots.items():
            by_org[org_id] += [lead_id, orjson.dumps(snapshot.as_json())]
        redis_batch.execute(
            self._redis, [("HSET", state_keys.model_leads(org_id), *fields) for org_id, fields in by_org.items()]
        )
