"""The CLI as an operator uses it: dev up / status / down on configurable ports, orgs create."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import psycopg
from cryptography.fernet import Fernet

from drippulse.devstack import port_open
from drippulse.settings import Settings
from streams.state.secret_box import SecretBox
from tests import control_plane
from tests.stack import process_env


def _drippulse(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drippulse", *args], env=env, capture_output=True, text=True, timeout=120
    )


def _everything_in_postgres(port: str) -> str:
    """Every row of every table of the control plane, as text."""
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/drippulse") as connection:
        tables = [row[0] for row in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return "\n".join(str(connection.execute(f'SELECT * FROM "{table}"').fetchall()) for table in tables)


def test_dev_up_status_orgs_create_down(tmp_path: Path) -> None:
    env = stack = process_env(tmp_path / "home")
    kafka_port, redis_port = int(stack["DRIPPULSE_EMBEDDED_KAFKA_PORT"]), int(stack["DRIPPULSE_EMBEDDED_REDIS_PORT"])
    postgres_port = int(stack["DRIPPULSE_EMBEDDED_POSTGRES_PORT"])
    try:
        up = _drippulse(env, "dev", "up")
        assert up.returncode == 0, up.stderr
        assert port_open(kafka_port) and port_open(redis_port) and port_open(postgres_port)
        status = _drippulse(env, "dev", "status")
        assert status.returncode == 0
        assert f"127.0.0.1:{kafka_port}" in status.stdout and "healthy" in status.stdout
        assert f"127.0.0.1:{postgres_port}/drippulse" in status.stdout

        created = _drippulse(env, "orgs", "create", "Acme")
        assert created.returncode == 0, created.stderr
        lines = dict(line.split(":", 1) for line in created.stdout.strip().splitlines())
        assert lines["org_id"].strip().startswith("org_") and lines["api_key"].strip().startswith("dpk_")
        secret = lines["api_key"].strip()
        stored = _everything_in_postgres(str(postgres_port))
        assert secret not in stored, "API keys must be stored hashed"
        assert hashlib.sha256(secret.encode()).hexdigest() in stored
    finally:
        down = _drippulse(env, "dev", "down")
    assert down.returncode == 0 and all(part in down.stdout for part in ("kafka", "redis", "postgres"))
    assert not any(port_open(port) for port in (kafka_port, redis_port, postgres_port))
    after = _drippulse(env, "dev", "status")
    assert after.returncode == 1 and "DOWN" in after.stdout


def test_secrets_are_resealed_with_a_new_key_and_the_old_one_dropped(tmp_path: Path) -> None:
    """Rotation as an operator does it: NEW,OLD on every process, `secrets reseal`, then NEW alone."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    env = {**process_env(tmp_path / "home"), "DRIPPULSE_SECRET_KEY": old}
    try:
        assert _drippulse(env, "dev", "up").returncode == 0
        org_id = _drippulse(env, "orgs", "create", "Keys").stdout.split()[1]
        settings = Settings(**{k: v for k, v in env.items() if k.startswith(("DRIPPULSE_", "DATABASE_"))})
        control_plane.subscribe(settings, org_id, "https://93.184.216.34/hook")
        env["DRIPPULSE_SECRET_KEY"] = f"{new},{old}"
        resealed = _drippulse(env, "secrets", "reseal")
        assert resealed.returncode == 0 and "resealed 1 secrets" in resealed.stdout, resealed.stderr
        stored = _everything_in_postgres(env["DRIPPULSE_EMBEDDED_POSTGRES_PORT"])
        sealed = re.findall(r"'sealed': '([^']+)'", stored)
        assert sealed and all(SecretBox([new.encode()]).open(s).startswith("whsec_") for s in sealed)
    finally:
        _drippulse(env, "dev", "down")
