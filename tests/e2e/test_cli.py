"""The CLI as an operator uses it: dev up / status / down on configurable ports, orgs create."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import redis

from drippulse.devstack import port_open
from tests.stack import stack_env


def _drippulse(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drippulse", *args], env=env, capture_output=True, text=True, timeout=120
    )


def _everything_in_redis(url: str) -> bytes:
    client = redis.Redis.from_url(url)
    dump = []
    for key in client.scan_iter():
        dump.append(key)
        kind = client.type(key)
        if kind == b"string":
            dump.append(client.get(key) or b"")
        elif kind == b"hash":
            dump.extend(b"%s=%s" % item for item in client.hgetall(key).items())
        elif kind == b"set":
            dump.extend(client.smembers(key))
    return b"\n".join(dump)


def test_dev_up_status_orgs_create_down(tmp_path: Path) -> None:
    stack = stack_env(tmp_path / "home")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "CLICKHOUSE_URL", "SCHEMA_REGISTRY_URL")
    }
    env.update(stack)
    kafka_port, redis_port = int(stack["DRIPPULSE_EMBEDDED_KAFKA_PORT"]), int(stack["DRIPPULSE_EMBEDDED_REDIS_PORT"])
    try:
        up = _drippulse(env, "dev", "up")
        assert up.returncode == 0, up.stderr
        assert port_open(kafka_port) and port_open(redis_port)
        status = _drippulse(env, "dev", "status")
        assert status.returncode == 0
        assert f"127.0.0.1:{kafka_port}" in status.stdout and "healthy" in status.stdout

        created = _drippulse(env, "orgs", "create", "Acme")
        assert created.returncode == 0, created.stderr
        lines = dict(line.split(":", 1) for line in created.stdout.strip().splitlines())
        assert lines["org_id"].strip().startswith("org_") and lines["api_key"].strip().startswith("dpk_")
        secret = lines["api_key"].strip()
        stored = _everything_in_redis(f"redis://127.0.0.1:{redis_port}/0")
        assert secret.encode() not in stored, "API keys must be stored hashed"
        assert hashlib.sha256(secret.encode()).hexdigest().encode() in stored
    finally:
        down = _drippulse(env, "dev", "down")
    assert down.returncode == 0 and "kafka" in down.stdout and "redis" in down.stdout
    assert not port_open(kafka_port) and not port_open(redis_port)
    after = _drippulse(env, "dev", "status")
    assert after.returncode == 1 and "DOWN" in after.stdout
