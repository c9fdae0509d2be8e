"""A ClickHouse HTTP interface in front of chdb, for the test of the ClickHouse-server code path
(no ClickHouse server runs here). It answers what clickhouse-connect asks with the real engine, and
checks what a server checks that matters here: a session serves one query at a time (a second one
gets SESSION_IS_LOCKED, as from a server). It writes every request it got, one JSON line each.

Run as its own process (`python -m tests.clickhouse_http PORT_FILE DATA_DIR LOG`): chdb allows one
session per process, and the test process's API holds one. Each query takes at least QUERY_S, as a
real one would, so concurrent queries do overlap."""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qsl

import orjson

from drippulse.local_http import LocalHttpServer, Reply

QUERY_S = 0.2
_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)


class ClickHouseOverHttp(LocalHttpServer):
    def __init__(self, data_dir: Path, log: Path) -> None:
        from chdb import session

        self._chdb = session.Session(str(data_dir))
        self._engine = threading.Lock()
        self._sessions: set[str] = set()
        self._sessions_lock = threading.Lock()
        self._log = log.open("ab")
        super().__init__()

    def respond_to(self, method: str, path: str, query: str, body: bytes, headers: dict[str, str]) -> Reply:
        args = dict(parse_qsl(query, keep_blank_values=True))
        session = args.get("session_id")
        with self._sessions_lock:
            locked = session is not None and session in self._sessions
            if session is not None and not locked:
                self._sessions.add(session)
        sql = (args["query"] + "\n" + body.decode()) if "query" in args else body.decode()
        params = {name.removeprefix("param_"): value for name, value in args.items() if name.startswith("param_")}
        settings = {k: v for k, v in args.items() if k not in ("query", "session_id") and not k.startswith("param_")}
        self._log.write(orjson.dumps({"sql": sql, "params": params, "session_id": session, "settings": settings}))
        self._log.write(b"\n")
        self._log.flush()
        if locked:
            return Reply(500, b"Code: 373. DB::Exception: Session is locked by a concurrent client (SESSION_IS_LOCKED)")
        try:
            time.sleep(QUERY_S)
            found = _FORMAT.search(sql)
            fmt = found.group(1) if found else args.get("default_format", "TabSeparated")
            statement = _FORMAT.sub("", sql) if found else sql
            with self._engine:
                result = self._chdb.query(statement, fmt, params=params)
            return Reply(200, result.bytes(), {"X-ClickHouse-Format": fmt})
        except Exception as exc:
            return Reply(500, f"Code: 62. DB::Exception: {exc}".encode())
        finally:
            if session is not None and not locked:
                with self._sessions_lock:
                    self._sessions.discard(session)


if __name__ == "__main__":
    port_file, data_dir, log = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    server = ClickHouseOverHttp(data_dir, log)
    server.start()
    port_file.write_text(server.base_url.rsplit(":", 1)[1])
    threading.Event().wait()
