"""Reads webhook delivery history from ClickHouse, always scoped to one organization and endpoint.

A delivery's state in this history is its latest attempt's result; deliveries not yet attempted live
only in the schedule (GET of one delivery shows both).
"""

from __future__ import annotations

from typing import Any

from api.cursors import decode_cursor, encode_cursor
from streams.delivery.redacted_url import redacted_url
from streams.sinks.clickhouse import ClickHouse

RESULT_OF_STATUS = {"delivered": "succeeded", "failed": "failed", "pending": "retrying"}
STATUS_OF_RESULT = {result: status for status, result in RESULT_OF_STATUS.items()}

_ATTEMPT_COLUMNS = """attempt_id, attempt, url, result, status_code, latency_ms, error, response_excerpt,
    toUnixTimestamp64Milli(attempted_at) AS attempted_at_ms,
    toUnixTimestamp64Milli(next_attempt_at) AS next_attempt_at_ms"""


class DeliveriesReader:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._ch = clickhouse
        self._table = f"{clickhouse.database}.webhook_attempts"

    def deliveries(
        self, org_id: str, webhook_id: str, status: str | None, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest last attempt first, keyset-paginated on (last attempt time, delivery_id)."""
        params: dict[str, Any] = {"org_id": org_id, "webhook_id": webhook_id}
        having = []
        if status is not None:
            having.append("last_result = {result:String}")
            params["result"] = RESULT_OF_STATUS[status]
        if cursor is not None:
            params["cursor_ms"], params["cursor_id"] = decode_cursor(cursor)
            having.append("(last_attempt_at_ms, delivery_id) < ({cursor_ms:Int64}, {cursor_id:String})")
        rows = self._ch.query(
            "SELECT delivery_id, any(message_id) AS message_id, any(event_type) AS event_type, "
            "count() AS attempts, argMax(result, (attempted_at, attempt)) AS last_result, "
            "argMax(status_code, (attempted_at, attempt)) AS last_status_code, "
            "argMax(error, (attempted_at, attempt)) AS last_error, "
            "toUnixTimestamp64Milli(max(attempted_at)) AS last_attempt_at_ms "
            f"FROM {self._table} FINAL WHERE org_id = {{org_id:String}} AND webhook_id = {{webhook_id:String}} "
            f"GROUP BY delivery_id {'HAVING ' + ' AND '.join(having) if having else ''} "
            f"ORDER BY last_attempt_at_ms DESC, delivery_id DESC LIMIT {int(limit) + 1}",
            params,
        )
        page = [_delivery(row) for row in rows[:limit]]
        last = page[-1] if len(rows) > limit else None
        return page, encode_cursor(last["last_attempt_at_ms"], last["delivery_id"]) if last else None

    def attempts(self, org_id: str, webhook_id: str, delivery_id: str) -> list[dict[str, Any]]:
        rows = self._ch.query(
            f"SELECT {_ATTEMPT_COLUMNS} FROM {self._table} FINAL WHERE org_id = {{org_id:String}} "
            "AND webhook_id = {webhook_id:String} AND delivery_id = {delivery_id:String} "
            "ORDER BY attempted_at, attempt",
            {"org_id": org_id, "webhook_id": webhook_id, "delivery_id": delivery_id},
        )
        for row in rows:
            row["url"] = redacted_url(row["url"])  # attempts an earlier build stored whole
            row["attempted_at_ms"] = int(row["attempted_at_ms"])
            if row["next_attempt_at_ms"] is not None:
                row["next_attempt_at_ms"] = int(row["next_attempt_at_ms"])
        return rows


def _delivery(row: dict[str, Any]) -> dict[str, Any]:
    row["status"] = STATUS_OF_RESULT[row.pop("last_result")]
    row["attempts"] = int(row["attempts"])
    row["last_attempt_at_ms"] = int(row["last_attempt_at_ms"])
    return row
