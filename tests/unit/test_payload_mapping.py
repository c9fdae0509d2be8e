"""Payload mapping of inbound hooks: dotted paths in, nested event fields out, missing paths skipped."""

from __future__ import annotations

from processors.payload_mapping import map_payload, nested_target


def test_maps_nested_paths_and_list_items() -> None:
    payload = {"data": {"id": 7, "contacts": [{"email": "a@b.io"}], "company": None}}
    mapping = {"lead.lead_id": "data.id", "lead.email": "data.contacts.0.email", "lead.company": "data.company"}
    assert map_payload(payload, mapping) == {"lead": {"lead_id": 7, "email": "a@b.io"}}


def test_missing_paths_and_non_objects_yield_nothing() -> None:
    assert map_payload({"data": [1]}, {"lead.lead_id": "data.5", "lead.email": "data.x.y"}) == {}
    assert map_payload("text", {"lead.lead_id": "id"}) == {}


def test_only_ascii_digits_index_a_list() -> None:
    assert map_payload({"data": [1, 2, 3]}, {"lead.lead_id": "data.\u00b2", "lead.email": "data.2"}) == {
        "lead": {"email": 3}
    }


def test_a_target_holding_another_is_found() -> None:
    assert nested_target({"lead": "a", "lead.email": "b"}) == ("lead", "lead.email")
    assert nested_target({"lead.email": "b", "lead.lead_id": "c", "leader": "d"}) is None
