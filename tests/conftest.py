"""Session fixtures: one real local stack (Tansu broker, Redis, PostgreSQL, chdb) for all integration tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from drippulse.devstack import EmbeddedStack
from drippulse.processes import spawn, terminate
from drippulse.settings import Settings
from tests.stack import SERVICE_URLS, ApiServer, WorkerProcess, stack_env, wait_until


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("drippulse")
    env = stack_env(home)
    saved = {key: os.environ.get(key) for key in env}
    for key in SERVICE_URLS:
        os.environ.pop(key, None)
    os.environ.update(env)
    yield Settings()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[EmbeddedStack]:
    embedded = EmbeddedStack(settings, attached=True)
    embedded.start()
    yield embedded
    embedded.stop()


@pytest.fixture(scope="session")
def api_server(stack: EmbeddedStack, settings: Settings) -> Iterator[ApiServer]:
    server = ApiServer(settings)
    server.start()
    yield server
    server.stop()


def _running(settings: Settings, kind: str, env: dict[str, str] | None = None) -> Iterator[WorkerProcess]:
    """A worker process for the whole session, stopped at its end."""
    process = WorkerProcess(settings, kind, env)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def qualifier(api_server: ApiServer, settings: Settings) -> Iterator[WorkerProcess]:
    yield from _running(settings, "qualifier")


@pytest.fixture(scope="session")
def orchestrator(api_server: ApiServer, settings: Settings) -> Iterator[WorkerProcess]:
    yield from _running(settings, "orchestrator")


def _new_org(settings: Settings, name: str) -> dict[str, Any]:
    from drippulse.operators import create_org

    created = create_org(settings, name)
    client = httpx.Client(base_url=settings.api_url, headers={"Authorization": f"Bearer {created.api_key}"}, timeout=30)
    return {"org_id": created.org_id, "key": created.api_key, "client": client, "project_id": created.project_id}


@pytest.fixture
def org_factory(api_server: ApiServer, settings: Settings) -> Any:
    """Creates organizations with an admin key and an authenticated HTTP client each."""
    return lambda name="Test Org": _new_org(settings, name)


WEBHOOK_WORKER_ENV = {
    "DRIPPULSE_WEBHOOK_ALLOW_LOOPBACK": "true",
    "DRIPPULSE_WEBHOOK_RETRY_SCHEDULE_S": ",".join(["0"] + ["0.2"] * 24),
    "DRIPPULSE_WEBHOOK_TIMEOUT_S": "2",
}
"""Loopback allowed (the test receivers listen on 127.0.0.1) and 25 quick attempts: at a 50 % failure
rate a message fails them all with probability 3e-8."""


@pytest.fixture(scope="session")
def webhook_worker(api_server: ApiServer, settings: Settings) -> Iterator[WorkerProcess]:
    yield from _running(settings, "webhooks", WEBHOOK_WORKER_ENV)


@pytest.fixture(scope="session")
def crm_worker(api_server: ApiServer, settings: Settings) -> Iterator[WorkerProcess]:
    env = {
        "DRIPPULSE_WEBHOOK_ALLOW_LOOPBACK": "true",
        "DRIPPULSE_CRM_MAX_ATTEMPTS": "4",
        "DRIPPULSE_CRM_BACKOFF_S": "0.2,0.2,0.4",
        "DRIPPULSE_CRM_PARK_SCHEDULE_S": ",".join(["1"] * 30),
        "DRIPPULSE_CRM_TIMEOUT_S": "2",
        "DRIPPULSE_CRM_BATCH_BUDGET_S": "1",
    }
    yield from _running(settings, "crm", env)


@pytest.fixture(scope="session")
def clickhouse_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(URL, request log) of a ClickHouse HTTP interface in front of its own chdb (tests/clickhouse_http.py),
    for processes that need a ClickHouse server."""
    home = tmp_path_factory.mktemp("clickhouse-http")
    port_file, log = home / "port", home / "requests.jsonl"
    process = spawn(
        [sys.executable, "-m", "tests.clickhouse_http", str(port_file), str(home / "data"), str(log)],
        home / "server.log",
        attached=True,
    )
    try:
        wait_until(lambda: port_file.exists() and port_file.read_text(), 60, "the ClickHouse HTTP interface")
        yield f"http://default:@127.0.0.1:{port_file.read_text()}", log
    finally:
        terminate(process.pid)
