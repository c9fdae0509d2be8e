"""The trainer's lead snapshots: a replay after a crash learns exactly what an uninterrupted run did."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.lead_snapshots import LeadSnapshot, describing, merged

Event = tuple[str, str, str, dict[str, Any]]
"""(kind: created | updated | outcome, lead id, event id, lead fields)."""

_fields = st.fixed_dictionaries(
    {},
    optional={
        "title": st.sampled_from(["CTO", "Analyst", "VP Sales"]),
        "country": st.sampled_from(["US", "DE"]),
        "attributes": st.dictionaries(st.sampled_from(["plan", "utm"]), st.sampled_from(["a", "b"]), max_size=2),
    },
)
_events = st.lists(
    st.tuples(
        st.sampled_from(["created", "updated", "outcome"]),
        st.sampled_from(["l-1", "l-2", "l-3"]),
        st.sampled_from(["e-1", "e-2", "e-3", "e-4", "e-5", "e-6"]),
        _fields,
    ),
    max_size=30,
)
Examples = list[tuple[int, str, dict[str, Any]]]


def run(stream: list[Event], snapshots: dict[str, LeadSnapshot], start: int, end: int) -> Examples:
    """What the trainer does with its snapshots for the events at offsets [start, end)."""
    learned: Examples = []
    for offset in range(start, end):
        kind, lead_id, event_id, fields = stream[offset]
        snapshot = snapshots.setdefault(lead_id, LeadSnapshot(0))
        if kind == "outcome":
            before = snapshot.before(offset)
            if before is not None and snapshot.counts(event_id, offset):
                learned.append((offset, lead_id, before))
        else:
            snapshot.describe(offset, {"lead_id": lead_id, **fields}, created=kind == "created")
    return learned


def stored(snapshots: dict[str, LeadSnapshot], checkpointed: int) -> dict[str, LeadSnapshot]:
    """Through JSON, as Redis keeps them, pruned as the trainer prunes them when it saves."""
    for snapshot in snapshots.values():
        snapshot.prune(checkpointed)
    return {
        lead_id: LeadSnapshot.from_json(orjson.loads(orjson.dumps(s.as_json())), 0) for lead_id, s in snapshots.items()
    }


@settings(max_examples=300, deadline=None)
@given(_events, st.data())
def test_a_replay_from_the_checkpoint_learns_what_the_uninterrupted_run_learned(
    stream: list[Event], data: st.DataObject
) -> None:
    """The model was checkpointed at offset `checkpoint`; the snapshots were saved later, at `crash`,
    holding what events after the checkpoint made of the leads. The restarted trainer replays from
    the checkpoint, with the model as it was there."""
    checkpoint = data.draw(st.integers(0, len(stream)))
    crash = data.draw(st.integers(checkpoint, len(stream)))
    uninterrupted = run(stream, {}, 0, len(stream))

    snapshots: dict[str, LeadSnapshot] = {}
    in_model = run(stream, snapshots, 0, checkpoint)
    run(stream, snapshots, checkpoint, crash)
    restarted = stored(snapshots, checkpoint)
    assert in_model + run(stream, restarted, checkpoint, len(stream)) == uninterrupted


def test_a_duplicate_outcome_counts_once_and_a_replayed_one_again() -> None:
    snapshot = LeadSnapshot(0)
    assert snapshot.counts("e-9", 10)
    assert not snapshot.counts("e-9", 12), "the same event again, at another offset: a producer's duplicate"
    assert snapshot.counts("e-9", 10), "the same record again: a replay the restored model has not learned"


def test_an_update_keeps_what_it_does_not_send_and_the_store_keeps_no_address() -> None:
    created = merged(None, {"email": "ada@acme.io", "title": "CTO", "attributes": {"plan": "pro"}}, created=True)
    updated = merged(created, {"lead_id": "l", "country": "DE", "attributes": {"seats": "5"}}, created=False)
    assert updated == {
        "email": "@acme.io",
        "title": "CTO",
        "country": "DE",
        "attributes": {"plan": "pro", "seats": "5"},
    }
    assert describing({"lead_id": "l", "first_name": "Ada", "company": "Acme"}) == {}
