"""ClickHouse access with two interchangeable backends: chdb in-process (embedded) or a server.

Both speak the same SQL and take rows as JSONEachRow, so the DDL (`ddl/*.sql` beside this module,
shipped as package data) and every query run unchanged on either. chdb locks its data directory, so
the embedded backend serializes all use inside the one process that owns it.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Protocol

import orjson

DDL_DIR: Traversable = resources.files("streams.sinks") / "ddl"
"""The tables, one numbered .sql file each, applied in order; found through the installed package."""
_ESCAPED = str.maketrans(
    {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0", "\b": "\\b", "\f": "\\f", "'": "\\'"}
)


_ERROR_CODE = re.compile(r"Code: (\d+)\.")
_DATA_ERRORS = frozenset({6, 27, 38, 41, 53, 69, 70, 72, 117, 131, 321, 407})
"""ClickHouse's codes for a value it cannot store in its column (cannot parse text, number, date or
time, a type mismatch, incorrect data, out of range, decimal overflow): the rows are at fault, not
the server, and the same insert will be refused again."""


class RowsRefused(ValueError):
    """ClickHouse refused the insert because of what some row holds; see `_DATA_ERRORS`."""


def _refused_rows(exc: Exception) -> RowsRefused | None:
    found = _ERROR_CODE.search(str(exc))
    if found is None or int(found.group(1)) not in _DATA_ERRORS:
        return None
    return RowsRefused(" ".join(str(exc).split())[:500])


class ClickHouse(Protocol):
    database: str

    def command(self, sql: str) -> None: ...

    def insert_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Raises RowsRefused when a row's values cannot be stored (and then none of them is)."""
        ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class ChdbClickHouse:
    def __init__(self, path: Path, database: str) -> None:
        from chdb import session

        path.mkdir(parents=True, exist_ok=True)
        self.database = database
        open_session: Any = session.Session
        self._session: Any = open_session(str(path))
        self._lock = threading.Lock()

    def command(self, sql: str) -> None:
        with self._lock:
            self._session.query(sql)

    def insert_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        body = b"\n".join(orjson.dumps(row) for row in rows).decode()
        with self._lock:
            try:
                self._session.query(f"INSERT INTO {self.database}.{table} FORMAT JSONEachRow\n{body}")
            except Exception as exc:
                raise _refused_rows(exc) or exc from None

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            result = self._session.query(sql, "JSONEachRow", params=_param_texts(params or {}))
        text = result.bytes()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def close(self) -> None:
        with self._lock:
            self._session.close()


def _param_texts(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter values as ClickHouse parses them, in its escaped (TSV) text format: chdb passes a
    string on as it is, so a tab or newline would end the value and a backslash start an escape,
    and it renders a list without quoting its elements. clickhouse-connect does the same for a server."""
    return {name: _param_text(value) for name, value in params.items()}


def _param_text(value: Any) -> Any:
    if isinstance(value, str):
        return value.translate(_ESCAPED)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_quoted(item) for item in value) + "]"
    return value


def _quoted(item: Any) -> str:
    """An array element in ClickHouse's quoted text format: strings in single quotes, escaped alike."""
    return f"'{item.translate(_ESCAPED)}'" if isinstance(item, str) else str(item)


class ServerClickHouse:
    """One clickhouse-connect client, shared by the API's request threads and the sinks. It carries
    no session: a server refuses a second query in a session while one runs, and these run at once."""

    def __init__(self, url: str, database: str) -> None:
        import clickhouse_connect

        self.database = database
        self._client = clickhouse_connect.get_client(dsn=url, autogenerate_session_id=False)

    def command(self, sql: str) -> None:
        self._client.command(sql)

    def insert_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            body = b"\n".join(orjson.dumps(row) for row in rows)
            try:
                self._client.raw_insert(f"{self.database}.{table}", insert_block=body, fmt="JSONEachRow")
            except Exception as exc:
                raise _refused_rows(exc) or exc from None

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        result = self._client.raw_query(sql, parameters=dict(params or {}), fmt="JSONEachRow")
        return [json.loads(line) for line in result.splitlines() if line.strip()]

    def close(self) -> None:
        self._client.close()


def connect_clickhouse(url: str, chdb_path: Path, database: str) -> ClickHouse:
    """A ClickHouse server when `url` is set, else chdb on `chdb_path`."""
    if not url:
        return ChdbClickHouse(chdb_path, database)
    return ServerClickHouse(url, database)


def ddl_files() -> list[Traversable]:
    """The DDL files in the order they apply (their names start with a number)."""
    return sorted((entry for entry in DDL_DIR.iterdir() if entry.name.endswith(".sql")), key=lambda entry: entry.name)


def apply_schema(clickhouse: ClickHouse) -> None:
    """Applies every DDL file in order; each statement is idempotent (IF NOT EXISTS)."""
    clickhouse.command(f"CREATE DATABASE IF NOT EXISTS {clickhouse.database}")
    for path in ddl_files():
        lines = path.read_text().replace("{database}", clickhouse.database).splitlines()
        sql = "\n".join(line for line in lines if not line.strip().startswith("--"))
        for statement in sql.split(";"):
            if statement.strip():
                clickhouse.command(statement)
