"""What the trainer remembers of a lead: what it looked like before each of its recent events.

The learned model must learn from a lead as it was *before* its outcome. The trainer keeps, per
lead, its describing fields as the latest `lead.created` / `lead.updated` left them, and picks the
version that was current when an outcome arrived.

Versions are stamped with the input offset of the event that made them, because the trainer's
snapshot store (Redis) and its model (PostgreSQL) are written at different moments. After a crash
the trainer re-reads events from its last model checkpoint while the store may already hold what
later events made of the lead; picking the newest version made *before* the replayed outcome keeps
the future out of the example, and a describing event seen again changes nothing. Versions older
than the checkpoint are no longer needed, so each lead keeps one of them and those made since.

An outcome event counts once: the same event id at another offset is a producer's duplicate and is
skipped, while the same event id at the same offset is a replay the restored model never learned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from processors.free_mail import email_domain
from processors.lead_features import CATEGORIES, MAGNITUDES

DESCRIBING_FIELDS = ("email", "title", *CATEGORIES, *MAGNITUDES)
MAX_VERSIONS = 16
"""A lead's versions beyond this many (since the checkpoint) drop the oldest: bounded memory for a
lead updated many times between two checkpoints, at the price of an example skipped if replayed."""
MAX_OUTCOMES = 8


def describing(lead: Mapping[str, Any]) -> dict[str, Any]:
    """The fields features read, and of the email only its domain: the store holds what the model
    needs and no address."""
    kept: dict[str, Any] = {name: lead[name] for name in DESCRIBING_FIELDS if lead.get(name) is not None}
    if isinstance(kept.get("email"), str):
        kept["email"] = "@" + email_domain(kept["email"])
    attributes = lead.get("attributes")
    if isinstance(attributes, Mapping) and attributes:
        kept["attributes"] = {str(k): v for k, v in attributes.items()}
    return kept


def merged(before: Mapping[str, Any] | None, lead: Mapping[str, Any], created: bool) -> dict[str, Any]:
    """The lead after an event: `lead.created` says all it is; `lead.updated` may send only what
    changed, so what it leaves out (and the attributes it does not name) keep their values."""
    now = describing(lead)
    if created or before is None:
        return now
    attributes = {**before.get("attributes", {}), **now.get("attributes", {})}
    result = {**before, **now}
    if attributes:
        result["attributes"] = attributes
    return result


@dataclass
class LeadSnapshot:
    partition: int
    versions: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    """(offset of the event that made it, the describing fields), oldest first."""
    outcomes: list[tuple[str, int]] = field(default_factory=list)
    """(event id, offset) of the latest outcomes learned from."""

    def describe(self, offset: int, lead: Mapping[str, Any], created: bool) -> bool:
        """Applies a describing event; False when it was applied before (a replay)."""
        if self.versions and offset <= self.versions[-1][0]:
            return False
        self.versions.append((offset, merged(self.versions[-1][1] if self.versions else None, lead, created)))
        del self.versions[:-MAX_VERSIONS]
        return True

    def before(self, offset: int) -> dict[str, Any] | None:
        """The lead as it was just before the event at `offset`; None if none of its versions is older."""
        found = None
        for made_at, fields in self.versions:
            if made_at >= offset:
                break
            found = fields
        return found

    def counts(self, event_id: str, offset: int) -> bool:
        """Whether an outcome is learned from: not when the same event came before at another offset."""
        for seen_id, seen_at in self.outcomes:
            if seen_id == event_id:
                return seen_at == offset
        self.outcomes.append((event_id, offset))
        del self.outcomes[:-MAX_OUTCOMES]
        return True

    def prune(self, checkpointed: int) -> None:
        """Drops versions no replay can need: all but the newest made before the checkpoint's offset."""
        older = [i for i, (made_at, _) in enumerate(self.versions) if made_at < checkpointed]
        if len(older) > 1:
            del self.versions[: older[-1]]

    def as_json(self) -> dict[str, Any]:
        return {"p": self.partition, "v": [[o, f] for o, f in self.versions], "o": [[e, o] for e, o in self.outcomes]}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], partition: int) -> LeadSnapshot:
        """A snapshot made on another partition (the topic was repartitioned) has offsets that mean
        nothing here: its latest version stands as the lead's state before anything on this one."""
        versions = [(int(o), dict(f)) for o, f in raw.get("v", [])]
        outcomes = [(str(e), int(o)) for e, o in raw.get("o", [])]
        if int(raw.get("p", partition)) != partition:
            return cls(partition, [(-1, versions[-1][1])] if versions else [], [])
        return cls(partition, versions, outcomes)
