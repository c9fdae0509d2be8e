"""The webhook delivery worker as a real process against real receivers: signed, verified, retried,
never lost across a SIGKILL, recorded in ClickHouse, replayable."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest

from drippulse.settings import Settings
from drippulse.synthetic import lead_event
from processors import ids
from processors.templates import LEAD_QUALIFICATION
from streams import topics
from tests.integration.helpers import activate_workflow, post_events
from tests.integration.outbound import produce_messages, subscribe
from tests.stack import read_topic, wait_until
from tests.webhook_receiver import Receiver, always, flaky

pytestmark = pytest.mark.stack


def _get_when(client: httpx.Client, path: str, ready: Any, what: str, **params: Any) -> Any:
    """GETs `path` until `ready(body)` holds (ClickHouse rows arrive through the sink a moment later)."""

    def attempt() -> Any:
        body = client.get(path, params=params).json()
        return body if ready(body) else None

    return wait_until(attempt, 60, what)


def _all_delivered(receiver: Receiver, message_ids: list[str]) -> bool:
    delivered = receiver.delivered()
    return all(delivered.get(m, 0) >= 1 for m in message_ids)


def test_qualified_leads_reach_subscribers_signed_and_filtered(
    qualifier: Any, webhook_worker: Any, org_factory: Any, settings: Settings
) -> None:
    org = org_factory("Hooked Co")
    activate_workflow(org["client"], "Lead Qualification", LEAD_QUALIFICATION)
    with Receiver() as receiver, Receiver() as unsubscribed:
        webhook_id = subscribe(org, settings, receiver, ["lead.qualified"])
        subscribe(org, settings, unsubscribed, ["deal.won"])
        rng = random.Random(11)
        post_events(org["client"], [lead_event(rng, org["org_id"], i) for i in range(30)])
        messages = wait_until(
            lambda: read_topic(settings, topics.WEBHOOK_DELIVERIES, key=org["org_id"], quiet_s=1.0), 60, "notifications"
        )
        message_ids = [m["message_id"] for m in messages]
        wait_until(lambda: _all_delivered(receiver, message_ids), 60, "every notification delivered")

        assert receiver.unverified == [], "every request verifies with the standardwebhooks library"
        assert set(receiver.delivered()) == set(message_ids)
        assert unsubscribed.answers == {}, "an endpoint filtering on another event type receives nothing"
        sample = receiver.bodies[message_ids[0]]
        assert sample["type"] == "lead.qualified" and sample["data"]["tier"]
        assert all(h["webhook-signature"].startswith("v1,") for h in receiver.headers)

    listed = _get_when(
        org["client"],
        f"/api/v1/webhooks/{webhook_id}/deliveries",
        lambda body: len(body["items"]) == len(message_ids),
        "the delivery history in ClickHouse",
        status="delivered",
    )["items"]
    expected_ids = {ids.webhook_delivery_id(m, webhook_id) for m in message_ids}
    assert {d["delivery_id"] for d in listed} == expected_ids
    assert all(d["attempts"] == 1 and d["last_status_code"] == 200 for d in listed)


def test_flaky_receiver_gets_every_message_exactly_once(
    webhook_worker: Any, org_factory: Any, settings: Settings
) -> None:
    org = org_factory("Flaky Co")
    with Receiver(flaky(0.5)) as receiver:
        webhook_id = subscribe(org, settings, receiver)
        message_ids = produce_messages(settings, org["org_id"], 200)
        wait_until(lambda: _all_delivered(receiver, message_ids), 90, "every message delivered despite failures")
        delivered = receiver.delivered()
        failed_requests = sum(len(a) for a in receiver.answers.values()) - len(message_ids)

    assert set(delivered) == set(message_ids)
    assert all(count == 1 for count in delivered.values()), "each webhook-id succeeds exactly once"
    assert failed_requests > 50, "the receiver did fail about half the requests"
    assert receiver.unverified == []

    retried = next(m for m in message_ids if len(receiver.answers[m]) > 1)
    delivery_id = ids.webhook_delivery_id(retried, webhook_id)
    detail = _get_when(
        org["client"],
        f"/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}",
        lambda body: len(body["attempt_history"]) == len(receiver.answers[retried]),
        "the attempts of a retried message in ClickHouse",
    )
    assert detail["status"] == "delivered"
    results = [a["result"] for a in detail["attempt_history"]]
    assert results[-1] == "succeeded" and set(results[:-1]) == {"retrying"}
    assert [a["status_code"] for a in detail["attempt_history"]] == receiver.answers[retried]


def test_sigkill_mid_load_loses_nothing(webhook_worker: Any, org_factory: Any, settings: Settings) -> None:
    org = org_factory("Killed Co")
    with Receiver(flaky(0.5, seed=3), delay_s=0.01) as receiver:
        subscribe(org, settings, receiver)
        message_ids = produce_messages(settings, org["org_id"], 600)
        wait_until(lambda: len(receiver.delivered()) >= 50, 60, "the first deliveries")
        webhook_worker.kill()
        before_restart = len([m for m, n in receiver.delivered().items() if n])
        assert before_restart < len(message_ids), "the worker died with work left"
        webhook_worker.start()
        wait_until(lambda: _all_delivered(receiver, message_ids), 120, "every message delivered after the restart")
        delivered = receiver.delivered()

    assert set(delivered) == set(message_ids)
    duplicates = sum(count - 1 for count in delivered.values())
    assert duplicates <= 200, "only attempts in flight at the kill (at most max_in_flight) may repeat"


def test_gone_endpoint_is_disabled_at_once(webhook_worker: Any, org_factory: Any, settings: Settings) -> None:
    org = org_factory("Gone Co")
    with Receiver(always(410)) as receiver:
        webhook_id = subscribe(org, settings, receiver)
        produce_messages(settings, org["org_id"], 5)
        shown = _get_when(
            org["client"], f"/api/v1/webhooks/{webhook_id}", lambda body: not body["enabled"], "it disabled"
        )
        assert "410" in shown["disabled_reason"]
        assert all(len(statuses) == 1 for statuses in receiver.answers.values()), "a 410 is never retried"

    reenabled = org["client"].patch(f"/api/v1/webhooks/{webhook_id}", json={"enabled": True}).json()
    assert reenabled["enabled"] and reenabled["disabled_reason"] is None


def test_test_send_and_replay(webhook_worker: Any, org_factory: Any, settings: Settings) -> None:
    org, other = org_factory("Replay Co"), org_factory("Nosy Co")
    with Receiver() as receiver:
        webhook_id = subscribe(org, settings, receiver, ["lead.qualified"])
        queued = org["client"].post(f"/api/v1/webhooks/{webhook_id}/test")
        assert queued.status_code == 202, queued.text
        delivery = queued.json()
        wait_until(lambda: receiver.delivered().get(delivery["message_id"]) == 1, 30, "the test message")
        assert receiver.bodies[delivery["message_id"]]["type"] == "webhook.test"

        path = f"/api/v1/webhooks/{webhook_id}/deliveries/{delivery['delivery_id']}"
        detail = _get_when(org["client"], path, lambda body: body["attempt_history"], "its history")
        assert detail["status"] == "delivered" and detail["attempts"] == 1
        assert other["client"].get(path).status_code == 404
        assert other["client"].post(f"{path}/replay").status_code == 404

        replayed = org["client"].post(f"{path}/replay")
        assert replayed.status_code == 202 and replayed.json()["status"] == "pending"
        wait_until(lambda: receiver.delivered().get(delivery["message_id"]) == 2, 30, "the replayed message")
    assert len(receiver.answers) == 1, "a replay re-sends the same webhook-id"
