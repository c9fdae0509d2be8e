"""The ClickHouse-server code path (CLICKHOUSE_URL), through clickhouse-connect, against the HTTP
interface of tests/clickhouse_http.py: the real engine (chdb) behind a server's HTTP protocol and its
one-query-per-session rule. What this does not cover: a real server's auth, TLS, clusters and
replication, and its background merges (FINAL reads are the same engine's)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest

from api.executions_reader import ExecutionFilter, ExecutionsReader
from streams.sinks.clickhouse import ServerClickHouse, apply_schema

TRICKY = "dir\\new\tline\nend'quote"


@pytest.fixture
def server(clickhouse_http: tuple[str, Path]) -> tuple[str, Path]:
    return clickhouse_http


def _requests(log: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in log.read_bytes().splitlines()]


def test_schema_rows_and_filtered_reads_round_trip(server: tuple[str, Path]) -> None:
    url, log = server
    clickhouse = ServerClickHouse(url, "drippulse")
    apply_schema(clickhouse)
    row = {
        "execution_id": "exec-1",
        "org_id": "org_server",
        "workflow_id": "wf_1",
        "workflow_version": 1,
        "event_id": "evt-1",
        "event_type": "lead.created",
        "lead_id": TRICKY,
        "status": "completed",
        "event_occurred_at": 1_700_000_000.0,
        "evaluated_at": 1_700_000_000.5,
    }
    clickhouse.insert_rows("executions", [row, row])
    reader = ExecutionsReader(clickhouse)

    items, _ = reader.list("org_server", ExecutionFilter(lead_id=TRICKY, workflow_ids=["wf_1", TRICKY]), 10, None)
    assert [item["lead_id"] for item in items] == [TRICKY], "FINAL collapses the replayed row; any string matches"
    assert reader.summary("org_server", None)["executions"] == 1

    sent = _requests(log)
    inserted = [
        orjson.loads(line)
        for r in sent
        if r["sql"].startswith("INSERT INTO drippulse.executions FORMAT JSONEachRow")
        for line in r["sql"].splitlines()[1:]
    ]
    assert [row["lead_id"] for row in inserted if row["org_id"] == "org_server"] == [TRICKY, TRICKY]
    listing = next(
        r
        for r in sent
        if "FROM drippulse.executions FINAL WHERE" in r["sql"]
        and "lead_id = " in r["sql"]
        and r["params"].get("org_id") == "org_server"
    )
    assert "{lead_id:String}" in listing["sql"] and TRICKY not in listing["sql"], "values travel as parameters"
    assert listing["params"]["org_id"] == "org_server"


def test_concurrent_queries_share_the_client_without_a_session(server: tuple[str, Path]) -> None:
    """The API's request threads and the sinks query at once; a server refuses a second query in one
    session while the first runs, so the client must carry none."""
    url, log = server
    clickhouse = ServerClickHouse(url, "drippulse")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: clickhouse.query("SELECT {n:UInt8} AS n", {"n": n}), range(8)))
    assert sorted(answer[0]["n"] for answer in answers) == list(range(8))
    assert all(request["session_id"] is None for request in _requests(log))
