"""A local CRM shaped like HubSpot's CRM v3 objects API, for the connector tests: contacts searched
by email, patched, created; tasks created. It records every request, can answer 429 with
Retry-After to one chosen request, refuses one email with a 400, and can be down (503)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from drippulse.local_http import LocalHttpServer, Reply


@dataclass(frozen=True)
class Request:
    at: float
    method: str
    path: str
    query: str
    idempotency_key: str
    authorization: str
    status: int


class HubSpotLikeServer(LocalHttpServer):
    def __init__(self, throttle_request: int | None = None, refuse_email: str | None = None) -> None:
        self.contacts: dict[str, dict[str, Any]] = {}
        self.tasks: list[dict[str, Any]] = []
        self.requests: list[Request] = []
        self.down = False
        """While set, every request gets 503: the CRM is having an outage."""
        self.hang_s = 0.0
        """While positive, every request is answered only after this long: the CRM hangs."""
        self._throttle_request = throttle_request
        self.refuse_email = refuse_email
        self._lock = threading.Lock()
        super().__init__()

    @property
    def url(self) -> str:
        return self.base_url

    def add_contact(self, email: str) -> str:
        contact_id = str(1000 + len(self.contacts))
        self.contacts[contact_id] = {"email": email}
        return contact_id

    def _answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "POST" and path == "/crm/v3/objects/contacts/search":
            email = body["filterGroups"][0]["filters"][0]["value"]
            found = [{"id": i, "properties": c} for i, c in self.contacts.items() if c.get("email") == email]
            return 200, {"total": len(found), "results": found}
        if method == "POST" and path == "/crm/v3/objects/contacts":
            properties = body["properties"]
            if properties.get("email") == self.refuse_email:
                return 400, {"status": "error", "message": "Property values were not valid"}
            if any(c.get("email") == properties.get("email") for c in self.contacts.values()):
                return 409, {"status": "error", "message": "Contact already exists"}
            contact_id = self.add_contact(properties["email"])
            self.contacts[contact_id].update(properties)
            return 201, {"id": contact_id, "properties": self.contacts[contact_id]}
        if method == "PATCH" and path.startswith("/crm/v3/objects/contacts/"):
            contact_id = path.rsplit("/", 1)[1]
            if contact_id not in self.contacts:
                return 404, {"status": "error", "message": "resource not found"}
            self.contacts[contact_id].update(body["properties"])
            return 200, {"id": contact_id, "properties": self.contacts[contact_id]}
        if method == "POST" and path == "/crm/v3/objects/tasks":
            self.tasks.append(body["properties"])
            return 201, {"id": str(len(self.tasks))}
        return 404, {"status": "error", "message": f"no route {method} {path}"}

    def respond_to(self, method: str, path: str, query: str, body: bytes, headers: dict[str, str]) -> Reply:
        if self.hang_s > 0:
            time.sleep(self.hang_s)
        with self._lock:
            index = len(self.requests) + 1
            extra = {"content-type": "application/json"}
            if self.down:
                status, answer = 503, {"status": "error", "message": "Service Unavailable"}
            elif index == self._throttle_request:
                status, answer = 429, {"status": "error", "message": "You have reached your secondly limit."}
                extra["retry-after"] = "1"
            else:
                status, answer = self._answer(method, path, json.loads(body or b"{}"))
            self.requests.append(
                Request(
                    time.monotonic(),
                    method,
                    path,
                    query,
                    headers.get("idempotency-key", ""),
                    headers.get("authorization", ""),
                    status,
                )
            )
        return Reply(status, json.dumps(answer).encode(), extra)
