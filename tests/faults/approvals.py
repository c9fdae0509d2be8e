"""The orchestrator's share of the fault suite: an organization of its own with an approval workflow
and a scheduled one, a person who decides, and the exact account of both once the fault is over.

Kept apart from `Scenario`'s organization, whose account counts two executions per acknowledged
event: here every lead pauses at an approval (`role:admin`, 1 h timeout, then a log action) and the
schedule runs every lead of the organization every few seconds.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx

from drippulse.operators import create_org
from streams import topics
from tests import control_plane
from tests.faults.harness import RECOVERY_TIMEOUT_S, FaultStack, every_page, read_org
from tests.integration.helpers import activate_workflow
from tests.stack import wait_until

PASSWORD = "correct horse battery staple"
APPROVAL_FIRST: dict[str, Any] = {
    "trigger": {"event_types": ["lead.created"]},
    "steps": [
        {"type": "approval", "approvers": ["role:admin"], "timeout_hours": 1},
        {"type": "action", "action": "log", "message": "approved"},
    ],
}
SCHEDULE_CRON = "* * * * * */5"
"""Every 5 s (seconds are the sixth field): several fire times in a short scenario."""


class ApprovalsOrg:
    def __init__(self, stack: FaultStack, tag: str, schedule: bool = False) -> None:
        self.stack = stack
        created = create_org(stack.settings, f"Faults approvals {tag}")
        self.org_id = created.org_id
        self.tag = tag
        key = httpx.Client(
            base_url=stack.settings.api_url, headers={"Authorization": f"Bearer {created.api_key}"}, timeout=60
        )
        self.key = key
        email = f"ann-{created.org_id}@example.com"
        control_plane.add_member(stack.settings, created.org_id, email, ["admin"], PASSWORD)
        login = httpx.post(
            f"{stack.settings.api_url}/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=60
        )
        assert login.status_code == 200, login.text
        self.person = httpx.Client(
            base_url=stack.settings.api_url, headers={"Authorization": f"Bearer {login.json()['token']}"}, timeout=60
        )
        self.workflow_id = activate_workflow(key, "approve first", APPROVAL_FIRST)["id"]
        self.scheduled_id = ""
        if schedule:
            definition = {
                "trigger": {"schedule": {"cron": SCHEDULE_CRON, "timezone": "UTC"}},
                "steps": [{"type": "action", "action": "log", "message": "scheduled"}],
            }
            self.scheduled_id = activate_workflow(key, "every 5 s", definition)["id"]
        self.leads = 0
        self.decided: dict[str, str] = {}
        """approval id -> the status its decision answered with 200."""

    def post_leads(self, count: int) -> None:
        """Each acknowledged once, retried after a 503 as clients are asked to."""
        for _ in range(count):
            self.leads += 1
            lead = {"lead_id": f"{self.tag}-lead-{self.leads}", "email": f"l{self.leads}@{self.tag}.io"}
            event = {"event_id": f"{self.tag}-{self.leads}", "event_type": "lead.created", "lead": lead}
            self._until_answered(lambda event=event: self.key.post("/api/v1/events", json=event), {202})

    def pending(self) -> list[dict[str, Any]]:
        params = {"workflow_id": self.workflow_id, "status": "pending", "limit": 500}
        answer = self.person.get("/api/v1/approvals", params=params)
        items: list[dict[str, Any]] = answer.json()["items"] if answer.status_code == 200 else []
        return items

    def wait_opened(self) -> list[dict[str, Any]]:
        """Every lead's approval open (the decided ones decided): the pending ones."""
        wait_until(
            lambda: len(self.pending()) + len(self.decided) == self.leads,
            RECOVERY_TIMEOUT_S,
            f"{self.leads} approvals of {self.tag} opened",
        )
        return self.pending()

    def decide(self, approvals: list[dict[str, Any]]) -> None:
        """Approves each, or rejects every third; retried after a 503 until answered."""
        for n, approval in enumerate(approvals):
            status, path, body = (
                ("rejected", "reject", {"comment": "no"}) if n % 3 == 2 else ("approved", "approve", {})
            )
            url = f"/api/v1/approvals/{approval['id']}/{path}"
            self._until_answered(lambda url=url, body=body: self.person.post(url, json=body), {200})
            self.decided[approval["id"]] = status

    def try_deciding(self, approval: dict[str, Any]) -> int:
        """One attempt, as a person clicking during an outage."""
        return self.person.post(f"/api/v1/approvals/{approval['id']}/approve", json={}).status_code

    def _until_answered(self, request: Any, wanted: set[int]) -> None:
        """Retried after a 503 (after its Retry-After) or no answer, for the recovery timeout at most:
        then the test fails instead of waiting for ever."""
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                answer = request()
            except httpx.HTTPError as exc:
                last = repr(exc)
                time.sleep(1)
                continue
            if answer.status_code in wanted:
                return
            assert answer.status_code == 503, f"{answer.status_code}: {answer.text}"
            last = f"503: {answer.text}"
            time.sleep(float(answer.headers.get("retry-after", "1")))
        raise AssertionError(f"not answered {sorted(wanted)} within {RECOVERY_TIMEOUT_S:.0f} s; last: {last}")

    def _approvals(self) -> list[dict[str, Any]]:
        params = {"workflow_id": self.workflow_id, "limit": 500}
        items: list[dict[str, Any]] = self.person.get("/api/v1/approvals", params=params).json()["items"]
        return items

    def _executions(self, workflow_id: str) -> list[dict[str, Any]]:
        return every_page(self.person, "/api/v1/executions", workflow_id=workflow_id)

    def resumed(self) -> bool:
        approvals = self._approvals()
        return len(approvals) == self.leads and all(a["resumed_at_ms"] for a in approvals)

    def account(self) -> dict[str, int]:
        """Every approval opened once and decided once, as its decider was told; every execution
        resumed with that decision and finished, exactly once as listed; on the topic, a repeated
        resume (a kill between producing and settling) carries the same outcome. With a schedule:
        every fire time claimed was completed, and ran exactly its segment's leads."""
        wait_until(self.resumed, RECOVERY_TIMEOUT_S, f"every approval of {self.tag} resumed")
        approvals = self._approvals()
        assert {a["id"]: a["status"] for a in approvals} == self.decided, "every approval as its decider was told"
        by_execution = {a["execution_id"]: a["status"] for a in approvals}
        final = {"approved": "completed", "rejected": "rejected"}
        expected = {execution: final[status] for execution, status in by_execution.items()}
        wait_until(
            lambda: {e["execution_id"]: e["status"] for e in self._executions(self.workflow_id)} == expected,
            RECOVERY_TIMEOUT_S,
            f"every execution of {self.tag} listed as it was decided",
        )
        on_topic = read_org(self.stack.settings, self.org_id, (topics.EXECUTIONS,))[topics.EXECUTIONS]
        outcomes: dict[str, set[str]] = {}
        copies: Counter[str] = Counter()
        for record in on_topic:
            value = record.value
            if value["workflow_id"] == self.workflow_id and value["status"] not in ("awaiting_approval",):
                outcomes.setdefault(value["execution_id"], set()).add(value["status"])
                copies[value["execution_id"]] += 1
        assert outcomes == {e: {s} for e, s in expected.items()}, "one outcome per execution on the topic"
        figures = {
            "approvals": len(approvals),
            "resumes_produced_twice": sum(n - 1 for n in copies.values()),
        }
        if self.scheduled_id:
            assert self.key.post(f"/api/v1/workflows/{self.scheduled_id}/deactivate").status_code == 200
            wait_until(
                lambda: all(
                    f["completed"] for f in control_plane.schedule_fires(self.stack.settings, self.scheduled_id)
                ),
                RECOVERY_TIMEOUT_S,
                "every claimed fire time completed",
            )
            fires = control_plane.schedule_fires(self.stack.settings, self.scheduled_id)
            ran = sum(f["leads"] for f in fires)
            wait_until(
                lambda: len(self._executions(self.scheduled_id)) == ran,
                RECOVERY_TIMEOUT_S,
                f"the {ran} scheduled executions of {len(fires)} fire times",
            )
            figures |= {"fire_times": len(fires), "scheduled_executions": ran}
        return figures
