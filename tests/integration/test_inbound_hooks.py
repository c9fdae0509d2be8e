"""Signed inbound webhooks: a valid signature produces exactly one inbound event; a tampered body, a
wrong secret or a stale timestamp is refused with 401 and produces nothing."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from drippulse.settings import Settings
from streams import topics
from tests.stack import read_topic

pytestmark = pytest.mark.stack
FORM_MAPPING = {"lead.lead_id": "data.id", "lead.email": "data.contact.email", "lead.company": "data.company"}


def _signed(secret: str, message_id: str, body: str, at: datetime | None = None) -> dict[str, str]:
    at = at or datetime.now(UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
        "content-type": "application/json",
    }


def _source(org: dict[str, Any], **fields: Any) -> dict[str, Any]:
    created = org["client"].post("/api/v1/inbound_sources", json={"name": "Form tool", **fields})
    assert created.status_code == 201, created.text
    return dict(created.json())


def test_signed_hook_produces_exactly_one_event(org_factory: Any, settings: Settings) -> None:
    org = org_factory("Hook Co")
    source = _source(org, mapping=FORM_MAPPING)
    assert source["secret"].startswith("whsec_")
    hook = httpx.Client(base_url=settings.api_url, timeout=10)
    body = json.dumps({"data": {"id": "L-77", "contact": {"email": "ana@acme.io"}, "company": "Acme", "x": 1}})

    accepted = hook.post(source["hook_path"], content=body, headers=_signed(source["secret"], "msg_1", body))
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["accepted"] == 1
    retried = hook.post(source["hook_path"], content=body, headers=_signed(source["secret"], "msg_1", body))
    assert retried.status_code == 202 and retried.json()["accepted"] == 0, "the sender's retry is deduplicated"

    tampered = body.replace("Acme", "Evil")
    stale = datetime.now(UTC) - timedelta(minutes=6)
    refused = {
        "tampered body": hook.post(
            source["hook_path"], content=tampered, headers=_signed(source["secret"], "msg_2", body)
        ),
        "wrong secret": hook.post(
            source["hook_path"],
            content=body,
            headers=_signed("whsec_" + "QUJD" * 11, "msg_3", body),
        ),
        "stale timestamp": hook.post(
            source["hook_path"], content=body, headers=_signed(source["secret"], "msg_4", body, stale)
        ),
        "no signature": hook.post(source["hook_path"], content=body, headers={"content-type": "application/json"}),
    }
    for case, response in refused.items():
        assert response.status_code == 401, case
        assert response.json()["type"].endswith("/bad-signature"), case

    events = read_topic(settings, topics.INBOUND_EVENTS, key=org["org_id"])
    assert len(events) == 1, "only the valid request produced, and only once"
    (event,) = events
    assert event["lead"]["lead_id"] == "L-77" and event["lead"]["email"] == "ana@acme.io"
    assert event["lead"]["company"] == "Acme" and event["source"] == "hook:Form tool"
    assert event["event_type"] == "LEAD_CREATED"


def test_unmapped_source_takes_events_as_they_are_and_validates_them(org_factory: Any, settings: Settings) -> None:
    org, other = org_factory("Raw Hook Co"), org_factory("Other Co")
    source = _source(org)
    hook = httpx.Client(base_url=settings.api_url, timeout=10)
    body = json.dumps({"event_type": "lead.updated", "lead": {"lead_id": "L-1", "title": "CTO"}})
    accepted = hook.post(source["hook_path"], content=body, headers=_signed(source["secret"], "m1", body))
    assert accepted.status_code == 202, accepted.text

    invalid = json.dumps({"lead": {"email": "no-id@acme.io"}})
    rejected = hook.post(source["hook_path"], content=invalid, headers=_signed(source["secret"], "m2", invalid))
    assert rejected.status_code == 422 and rejected.json()["errors"]

    unknown = hook.post("/api/v1/hooks/src_unknown", content=body, headers=_signed(source["secret"], "m3", body))
    assert unknown.status_code == 404
    listed = org["client"].get("/api/v1/inbound_sources").json()["items"]
    assert [s["id"] for s in listed] == [source["id"]]
    assert "secret" not in listed[0] and "secrets" not in listed[0] and listed[0]["signing_secrets"] == 1
    assert other["client"].get(f"/api/v1/inbound_sources/{source['id']}").status_code == 404
    assert other["client"].delete(f"/api/v1/inbound_sources/{source['id']}").status_code == 404


def test_secret_rotation_accepts_both_secrets_during_the_overlap(org_factory: Any, settings: Settings) -> None:
    org = org_factory("Rotating Hook Co")
    source = _source(org)
    hook = httpx.Client(base_url=settings.api_url, timeout=10)
    path = f"/api/v1/inbound_sources/{source['id']}/rotate_secret"

    def post(secret: str, message_id: str) -> int:
        body = json.dumps({"lead": {"lead_id": message_id}})
        return hook.post(source["hook_path"], content=body, headers=_signed(secret, message_id, body)).status_code

    rotated = org["client"].post(path, json={"overlap_hours": 1}).json()
    assert rotated["signing_secrets"] == 2 and rotated["previous_secret_valid_until_ms"]
    assert post(source["secret"], "old-1") == 202 and post(rotated["secret"], "new-1") == 202

    again = org["client"].post(path, json={"overlap_hours": 0}).json()
    assert again["signing_secrets"] == 1
    assert post(rotated["secret"], "old-2") == 401 and post(source["secret"], "old-3") == 401
    assert post(again["secret"], "new-2") == 202


@pytest.mark.parametrize("signature", ["garbage", "v1,!!!notbase64", "v1,", "v2,c2ln", "v1,a v1,b"])
def test_a_malformed_signature_is_a_401_and_produces_nothing(
    org_factory: Any, settings: Settings, signature: str
) -> None:
    org = org_factory("Malformed Co")
    source = _source(org)
    body = json.dumps({"event_type": "lead.created", "lead": {"lead_id": "l-1"}})
    headers = {**_signed(source["secret"], "msg_bad", body), "webhook-signature": signature}
    refused = httpx.post(settings.api_url + source["hook_path"], content=body, headers=headers, timeout=10)
    assert refused.status_code == 401 and refused.json()["type"].endswith("/bad-signature"), refused.text
    not_json = httpx.post(
        settings.api_url + source["hook_path"], content=b"{not json", headers=_signed(source["secret"], "m2", "x")
    )
    assert not_json.status_code == 401, "a body that does not match its signature is refused before parsing"
    assert read_topic(settings, topics.INBOUND_EVENTS, key=org["org_id"]) == []


def test_an_oversized_declared_body_is_refused_before_it_is_sent(org_factory: Any, settings: Settings) -> None:
    """16 MiB declared, 512 KiB sent: the answer comes without waiting for the rest."""
    org = org_factory("Large Co")
    path = _source(org)["hook_path"]
    host, port = settings.api_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        connection.sendall(f"{head}Content-Length: {16 * 1024 * 1024}\r\n\r\n".encode() + b"x" * 512 * 1024)
        answer = connection.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]


def test_two_long_webhook_ids_sharing_a_prefix_are_two_events(org_factory: Any, settings: Settings) -> None:
    """The sender's `webhook-id` is the dedup key: two ids that differ after the first 200 characters
    are two messages, both produced; each one's retry is still a duplicate."""
    org = org_factory("Long Id Co")
    source = _source(org)
    hook = httpx.Client(base_url=settings.api_url, timeout=10)
    shared = "m" * 200
    ids = [shared + "a" * 100, shared + "b" * 100]
    answers = []
    for n, message_id in enumerate([*ids, ids[0]]):
        body = json.dumps({"event_type": "lead.created", "lead": {"lead_id": f"L-{n}"}})
        answers.append(
            hook.post(source["hook_path"], content=body, headers=_signed(source["secret"], message_id, body))
        )
    assert [a.status_code for a in answers] == [202, 202, 202], [a.text for a in answers]
    assert [a.json()["accepted"] for a in answers] == [1, 1, 0], "the first retry is the only duplicate"
    events = read_topic(settings, topics.INBOUND_EVENTS, key=org["org_id"])
    assert sorted(e["lead"]["lead_id"] for e in events) == ["L-0", "L-1"]
    assert len({e["event_id"] for e in events}) == 2 and all(len(e["event_id"]) <= 128 for e in events)
