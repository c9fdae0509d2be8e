"""The control plane survives `dev down` / `dev up`: an org, a person, keys, a project, an active
workflow, a webhook and an integration are all still there, the same key and the same login work, and
the qualifier evaluates the workflow again (the topics are new: the embedded broker keeps none)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from drippulse.processes import spawn, terminate
from processors.templates import LEAD_QUALIFICATION
from tests.stack import process_env, wait_until

PASSWORD = "correct horse battery staple"
PUBLIC_URL = "https://93.184.216.34/hook"


def _drippulse(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "drippulse", *args], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@contextmanager
def _running(env: dict[str, str], home: Path, workers: tuple[str, ...] = ("qualifier",)) -> Iterator[str]:
    """The API and these workers on the running stack, each owning its partitions; the API's URL."""
    url = f"http://127.0.0.1:{env['DRIPPULSE_API_PORT']}"
    children = [spawn([sys.executable, "-m", "drippulse", "api"], home / "api.log", attached=True, env=env)]
    ready = [home / f"ready-{kind}" for kind in workers]
    for kind, file in zip(workers, ready, strict=True):
        file.unlink(missing_ok=True)
        command = [sys.executable, "-m", "drippulse", "worker", kind, "--ready-file", str(file)]
        children.append(spawn(command, home / f"{kind}.log", attached=True, env=env))
    try:
        wait_until(lambda: _healthy(url), 120, "the API to become healthy")
        for file in ready:
            wait_until(file.exists, 120, f"{file.name} to own its partitions")
        yield url
    finally:
        for child in reversed(children):
            terminate(child.pid)
            child.wait(timeout=30)


def _org_key(env: dict[str, str]) -> str:
    """A new organization with its admin (ada@acme.test, PASSWORD); its API key."""
    created = _drippulse(env, "orgs", "create", "Acme", "--admin-email", "ada@acme.test", "--admin-password", PASSWORD)
    return dict(line.split(":", 1) for line in created.stdout.strip().splitlines())["api_key"].strip()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _executions(client: httpx.Client, workflow_id: str) -> int:
    summary: dict[str, Any] = client.get("/api/v1/executions/summary", params={"workflow_id": workflow_id}).json()
    return int(summary["executions"])


def _send(client: httpx.Client, lead_id: str) -> None:
    event = {"event_type": "lead.created", "lead": {"lead_id": lead_id, "email": f"{lead_id}@acme.io", "title": "VP"}}
    assert client.post("/api/v1/events", json=event).status_code == 202


def test_the_control_plane_survives_dev_down_and_up(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = process_env(home)
    _drippulse(env, "dev", "up")
    try:
        key = _org_key(env)
        with _running(env, home) as url:
            admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            project = admin.post("/api/v1/projects", json={"name": "Sales"}).json()
            body = {"name": "LQ", "definition": LEAD_QUALIFICATION, "project_id": project["id"]}
            workflow = admin.post("/api/v1/workflows", json=body).json()
            assert admin.post(f"/api/v1/workflows/{workflow['id']}/activate").status_code == 200
            webhook = admin.post("/api/v1/webhooks", json={"url": PUBLIC_URL}).json()
            connection = admin.post(
                "/api/v1/integration_connections",
                json={"type": "rest", "name": "crm", "base_url": PUBLIC_URL, "credentials": "s3cret"},
            ).json()
            ada = httpx.post(f"{url}/api/v1/auth/login", json={"email": "ada@acme.test", "password": PASSWORD})
            issuer = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ada.json()['token']}"})
            viewer_key = issuer.post("/api/v1/api_keys", json={"name": "dashboard", "role": "viewer"}).json()
            _send(admin, "before-restart")
            wait_until(lambda: _executions(admin, workflow["id"]) == 1, 120, "the first execution")
        _drippulse(env, "dev", "down")
        _drippulse(env, "dev", "up")

        with _running(env, home) as url:
            admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            assert admin.get(f"/api/v1/projects/{project['id']}").json()["name"] == "Sales"
            kept = admin.get(f"/api/v1/workflows/{workflow['id']}").json()
            assert (kept["status"], kept["active_version"], kept["project_id"]) == ("active", 1, project["id"])
            assert admin.get(f"/api/v1/webhooks/{webhook['id']}").json()["url"] == PUBLIC_URL
            assert admin.get(f"/api/v1/integration_connections/{connection['id']}").json()["has_credentials"]
            viewer = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {viewer_key['key']}"})
            assert viewer.get("/api/v1/workflows").status_code == 200, "the same key works"
            login = httpx.post(f"{url}/api/v1/auth/login", json={"email": "ada@acme.test", "password": PASSWORD})
            assert login.status_code == 200 and "admin" in login.json()["roles"], "the same login works"
            assert _executions(admin, workflow["id"]) == 1, "history is kept too"
            _send(admin, "after-restart")
            wait_until(lambda: _executions(admin, workflow["id"]) == 2, 120, "the qualifier to evaluate again")
    finally:
        subprocess.run([sys.executable, "-m", "drippulse", "dev", "down"], env=env, capture_output=True, timeout=120)
