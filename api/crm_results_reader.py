"""Reads CRM command results from ClickHouse, always scoped to one organization."""

from __future__ import annotations

from typing import Any

from api.cursors import decode_cursor, encode_cursor
from streams.sinks.clickhouse import ClickHouse

_COLUMNS = """result_id, command_id, connection_id, connector, execution_id, lead_id, operation, status,
    attempts, status_code, error, crm_object_id, toUnixTimestamp64Milli(applied_at) AS applied_at_ms"""


class CrmResultsReader:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._ch = clickhouse
        self._table = f"{clickhouse.database}.crm_command_results"

    def results(
        self, org_id: str, filters: dict[str, str | None], limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, keyset-paginated on (applied_at, result_id); filters are exact matches."""
        clauses = ["org_id = {org_id:String}"]
        params: dict[str, Any] = {"org_id": org_id}
        for column, value in filters.items():
            if value is not None:
                clauses.append(f"{column} = {{{column}:String}}")
                params[column] = value
        if cursor is not None:
            params["cursor_ms"], params["cursor_id"] = decode_cursor(cursor)
            clauses.append("(toUnixTimestamp64Milli(applied_at), result_id) < ({cursor_ms:Int64}, {cursor_id:String})")
        rows = self._ch.query(
            f"SELECT {_COLUMNS} FROM {self._table} FINAL WHERE {' AND '.join(clauses)} "
            f"ORDER BY applied_at DESC, result_id DESC LIMIT {int(limit) + 1}",
            params,
        )
        page = rows[:limit]
        for row in page:
            row["applied_at_ms"] = int(row["applied_at_ms"])
        last = page[-1] if len(rows) > limit else None
        return page, encode_cursor(last["applied_at_ms"], last["result_id"]) if last else None
