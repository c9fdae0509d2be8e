"""Paused executions survive `dev down` / `dev up`: approvals and waits pending before the restart
finish after it. The embedded broker keeps its topics in memory, so the orchestrator's changelog is
gone after the restart; the orchestrator rebuilds what it holds from PostgreSQL (held_executions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.test_restart import PASSWORD, _drippulse, _org_key, _running
from tests.stack import process_env, wait_until

LEADS = 5
WORKERS = ("qualifier", "orchestrator")
WAIT_S = 60
"""Long enough to be pending at `dev down`; it may fall due while the stack is down."""
APPROVAL_FIRST = {
    "trigger": {"event_types": ["lead.created"]},
    "steps": [
        {"type": "approval", "approvers": ["role:admin"], "timeout_hours": 1},
        {"type": "action", "action": "log", "message": "approved"},
    ],
}
WAIT_FIRST = {
    "trigger": {"event_types": ["lead.created"]},
    "steps": [{"type": "wait", "hours": WAIT_S / 3600}, {"type": "action", "action": "log", "message": "waited"}],
}


def _statuses(client: httpx.Client, workflow_id: str) -> list[str]:
    page = client.get("/api/v1/executions", params={"workflow_id": workflow_id, "limit": 100}).json()
    return sorted(item["status"] for item in page["items"])


def _pending(client: httpx.Client, workflow_id: str) -> list[dict[str, Any]]:
    params = {"workflow_id": workflow_id, "status": "pending", "limit": 100}
    items: list[dict[str, Any]] = client.get("/api/v1/approvals", params=params).json()["items"]
    return items


def test_approvals_and_waits_pending_before_dev_down_finish_after_dev_up(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = process_env(home)
    _drippulse(env, "dev", "up")
    try:
        key = _org_key(env)
        with _running(env, home, WORKERS) as url:
            admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            workflows = []
            for name, definition in (("approve first", APPROVAL_FIRST), ("wait first", WAIT_FIRST)):
                workflow = admin.post("/api/v1/workflows", json={"name": name, "definition": definition}).json()
                assert admin.post(f"/api/v1/workflows/{workflow['id']}/activate").status_code == 200
                workflows.append(workflow["id"])
            approvals, waits = workflows
            for n in range(LEADS):
                event = {"event_type": "lead.created", "lead": {"lead_id": f"lead-{n}", "email": f"l{n}@acme.io"}}
                assert admin.post("/api/v1/events", json=event).status_code == 202
            wait_until(lambda: len(_pending(admin, approvals)) == LEADS, 120, "the approvals to open")
            wait_until(lambda: _statuses(admin, waits) == ["waiting"] * LEADS, 120, "the waits recorded as waiting")
            waiting = admin.get(f"/api/v1/workflows/{waits}/enrollments").json()["items"]
            assert [e["status"] for e in waiting] == ["waiting"] * LEADS, "raise WAIT_S on a slower machine"
        _drippulse(env, "dev", "down")
        _drippulse(env, "dev", "up")

        with _running(env, home, WORKERS) as url:
            login = httpx.post(f"{url}/api/v1/auth/login", json={"email": "ada@acme.test", "password": PASSWORD})
            person = httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {login.json()['token']}"}, timeout=30
            )
            pending = _pending(person, approvals)
            assert len(pending) == LEADS
            for approval in pending:
                answer = person.post(f"/api/v1/approvals/{approval['id']}/approve", json={})
                assert answer.status_code == 200, answer.text
            wait_until(
                lambda: _statuses(person, approvals) == ["completed"] * LEADS, 120, "every approved run to finish"
            )
            wait_until(lambda: _statuses(person, waits) == ["completed"] * LEADS, 120, "every wait to finish")
            assert all(a["resumed_at_ms"] for a in person.get("/api/v1/approvals").json()["items"])
            assert person.get(f"/api/v1/workflows/{waits}/enrollments").json()["items"] == [], "leads released"
    finally:
        subprocess.run([sys.executable, "-m", "drippulse", "dev", "down"], env=env, capture_output=True, timeout=120)


def test_a_lead_whose_suspension_was_still_on_the_inbox_at_dev_down_can_enroll_again(tmp_path: Path) -> None:
    """With no orchestrator running, a run pauses and its suspension waits on the inbox; `dev down`
    loses it with the broker's topics, while the lead's enrollment stays in Redis. After `dev up` the
    lead is no longer enrolled in a run nothing holds: a manual run enrolls it again."""
    home = tmp_path / "home"
    env = process_env(home)
    _drippulse(env, "dev", "up")
    lead = {"lead_id": "lead-lost", "email": "lost@acme.io"}
    try:
        key = _org_key(env)
        with _running(env, home, ("qualifier",)) as url:
            admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            workflow = admin.post("/api/v1/workflows", json={"name": "approve", "definition": APPROVAL_FIRST}).json()
            assert admin.post(f"/api/v1/workflows/{workflow['id']}/activate").status_code == 200
            assert admin.post("/api/v1/events", json={"event_type": "lead.created", "lead": lead}).status_code == 202
            wait_until(lambda: _statuses(admin, workflow["id"]) == ["awaiting_approval"], 120, "the run to pause")
        _drippulse(env, "dev", "down")
        _drippulse(env, "dev", "up")

        with _running(env, home, WORKERS) as url:
            admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            ran = admin.post(f"/api/v1/workflows/{workflow['id']}/runs", json={"leads": [lead]})
            assert ran.status_code == 202, ran.text
            wait_until(
                lambda: len(_statuses(admin, workflow["id"])) == 2, 120, "the manual run to enroll the lead again"
            )
            wait_until(lambda: len(_pending(admin, workflow["id"])) == 1, 120, "the new run's approval to open")
    finally:
        subprocess.run([sys.executable, "-m", "drippulse", "dev", "down"], env=env, capture_output=True, timeout=120)
