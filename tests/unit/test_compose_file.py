"""infra/docker-compose.yml stays a valid Compose file that runs every DripPulse process.

No container engine here: the file is validated against the Compose Specification's JSON schema
(check-jsonschema's vendored copy), and what a schema cannot see (references between services, the
settings DripPulse reads, the commands its CLI has) is checked below. With Docker's compose plugin on
the machine, `docker compose config` validates it too.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from drippulse.cli import app
from drippulse.settings import Settings

REPOSITORY = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPOSITORY / "infra" / "docker-compose.yml"
PROCESSES = {
    "api": ["api"],
    "sink": ["worker", "sink"],
    "qualifier": ["worker", "qualifier"],
    "orchestrator": ["worker", "orchestrator"],
    "trainer": ["worker", "trainer"],
    "webhooks": ["worker", "webhooks"],
    "crm": ["worker", "crm"],
}
"""Service -> the `drippulse` command it runs."""
SERVICE_URLS = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka",
    "SCHEMA_REGISTRY_URL": "schema-registry",
    "CLICKHOUSE_URL": "clickhouse",
    "DATABASE_URL": "postgres",
    "REDIS_URL": "redis",
}
"""Setting -> the service it must point at."""


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def test_the_file_is_valid_against_the_compose_specification() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _docker_compose() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _docker_compose(), reason="no `docker compose` here; the JSON schema test validates the file")
def test_docker_compose_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ, "DRIPPULSE_SECRET_KEY": "placeholder"},
    )
    assert result.returncode == 0, result.stderr


def test_every_drippulse_process_runs_from_the_image_with_a_health_check(compose: dict[str, Any]) -> None:
    services = compose["services"]
    build = services["api"]["build"]
    assert (COMPOSE_FILE.parent / build["context"] / build["dockerfile"]).is_file()
    for name, argv in PROCESSES.items():
        service = services[name]
        assert service["image"] == services["api"]["image"] and service["build"] == services["api"]["build"], name
        assert service["command"][: len(argv)] == argv, name
        assert service["restart"] == "unless-stopped", name
        assert {"test", "interval", "retries"} <= service["healthcheck"].keys(), name
        help_text = CliRunner().invoke(app, [*argv, "--help"])
        assert help_text.exit_code == 0, f"{name}: `drippulse {' '.join(argv)}` is not a command"


def test_a_worker_is_healthy_once_its_ready_file_exists(compose: dict[str, Any]) -> None:
    for name, argv in PROCESSES.items():
        if argv[0] != "worker":
            continue
        service = compose["services"][name]
        command = service["command"]
        ready_file = command[command.index("--ready-file") + 1]
        assert service["healthcheck"]["test"] == ["CMD", "test", "-f", ready_file], name


def test_the_api_is_healthy_when_its_health_endpoint_answers(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    assert "8000:8000" in api["ports"]
    assert "http://127.0.0.1:8000/health" in " ".join(api["healthcheck"]["test"])
    assert api["environment"]["DRIPPULSE_API_HOST"] == "0.0.0.0"


def test_the_qualifier_can_be_scaled(compose: dict[str, Any]) -> None:
    """`docker compose up --scale qualifier=N`: nothing that only one container can have."""
    qualifier = compose["services"]["qualifier"]
    assert "container_name" not in qualifier and "ports" not in qualifier


def test_the_processes_read_settings_drippulse_has_and_reach_the_services(compose: dict[str, Any]) -> None:
    known = {field.alias for field in Settings.model_fields.values()}
    for name in PROCESSES:
        environment = compose["services"][name]["environment"]
        assert set(environment) <= known, f"{name}: {sorted(set(environment) - known)} are not DripPulse settings"
        for setting, target in SERVICE_URLS.items():
            host = re.split(r"[/@:]", re.sub(r"^\w+://([^@/]*@)?", "", environment[setting]))[0]
            assert host == target, f"{name}: {setting} points at {host!r}, not the {target} service"


def test_one_secret_key_for_every_process_and_compose_refuses_to_start_without_it(compose: dict[str, Any]) -> None:
    keys = {compose["services"][name]["environment"]["DRIPPULSE_SECRET_KEY"] for name in PROCESSES}
    assert len(keys) == 1
    assert re.fullmatch(r"\$\{DRIPPULSE_SECRET_KEY:\?[^}]+\}", keys.pop())


def test_dependencies_are_defined_and_awaited_healthy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, how in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on an undefined {dependency}"
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}, which has no healthcheck"
    for name in PROCESSES:
        assert {"kafka", "schema-registry", "postgres", "redis"} <= set(services[name]["depends_on"]), name


def test_the_named_volumes_are_declared_and_kafka_keeps_its_data(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.partition(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
    kafka = compose["services"]["kafka"]
    assert f"kafka-data:{kafka['environment']['KAFKA_LOG_DIRS']}" in kafka["volumes"]
    assert len(base64.urlsafe_b64decode(kafka["environment"]["CLUSTER_ID"] + "==")) == 16, "a KRaft cluster id"
