"""The fault suite's CRM: the HubSpot-shaped fake of tests/crm_server.py, plus what the faults need.

- It honours `Idempotency-Key` the way the connector contract assumes a CRM does: a write whose key
  already succeeded is answered as the first time and not applied again. `applied` counts the writes
  that changed something per key; `replayed` the writes the key made harmless (a command sent again).
- `outage` makes it answer every request with one status (429 with `Retry-After`, 500s).
- `held` cleared makes every request wait until it is set again: a CRM that hangs; `in_flight` says
  how many requests are waiting, so a test can kill the worker while one is.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass

from drippulse.local_http import Reply
from tests.crm_server import HubSpotLikeServer, Request

SEARCH_SUFFIX = "/search"


@dataclass(frozen=True)
class Outage:
    status: int
    retry_after_s: int | None = None


class FaultyCrm(HubSpotLikeServer):
    def __init__(self) -> None:
        super().__init__()
        self.outage: Outage | None = None
        self.held = threading.Event()
        self.held.set()
        self.in_flight = 0
        self.applied: Counter[str] = Counter()
        self.replayed: Counter[str] = Counter()
        self._done: dict[str, Reply] = {}
        self._state = threading.Lock()

    def respond_to(self, method: str, path: str, query: str, body: bytes, headers: dict[str, str]) -> Reply:
        """Overrides the base CRM's hook (it reads the query string), so every request meets the fault."""
        with self._state:
            self.in_flight += 1
        try:
            self.held.wait(timeout=60)
            return self._respond(method, path, query, body, headers)
        finally:
            with self._state:
                self.in_flight -= 1

    def _respond(self, method: str, path: str, query: str, body: bytes, headers: dict[str, str]) -> Reply:
        key = headers.get("idempotency-key", "")
        write = not path.endswith(SEARCH_SUFFIX)
        with self._lock:
            outage = self.outage
            if outage is not None:
                extra = {"content-type": "application/json"}
                if outage.retry_after_s is not None:
                    extra["retry-after"] = str(outage.retry_after_s)
                reply = Reply(outage.status, json.dumps({"status": "error", "message": "outage"}).encode(), extra)
            elif write and key in self._done:
                self.replayed[key] += 1
                reply = self._done[key]
            else:
                status, answer = self._answer(method, path, json.loads(body or b"{}"))
                reply = Reply(status, json.dumps(answer).encode(), {"content-type": "application/json"})
                if write and 200 <= status < 300:
                    self.applied[key] += 1
                    self._done[key] = reply
            self.requests.append(
                Request(time.monotonic(), method, path, query, key, headers.get("authorization", ""), reply.status)
            )
        return reply
