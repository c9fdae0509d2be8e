"""A local CRM shaped like HubSpot's CRM v3 objects API, for the connector tests: contacts searched
by email, patched, created; tasks created. It records every request, can answer 429 with
Retry-After to one chosen request, refuses one email with a 400, and can be down (503)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from drippulse.local_http import LocalHttpServer


@dataclass(frozen=True)
class Request:
    at: float
    method: str
    path: str
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
        self._throttle_request = throttle_request
        self.refuse_email = refuse_email
        self._lock = threading.Lock()
        super().__init__(self._handler())

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

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                path = urlsplit(self.path).path
                with server._lock:
                    index = len(server.requests) + 1
                    headers = {}
                    if server.down:
                        status, body = 503, {"status": "error", "message": "Service Unavailable"}
                    elif index == server._throttle_request:
                        status, body = 429, {"status": "error", "message": "You have reached your secondly limit."}
                        headers["retry-after"] = "1"
                    else:
                        status, body = server._answer(self.command, path, json.loads(raw or b"{}"))
                    server.requests.append(
                        Request(
                            time.monotonic(),
                            self.command,
                            path,
                            self.headers.get("idempotency-key", ""),
                            self.headers.get("authorization", ""),
                            status,
                        )
                    )
                reply = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_POST = do_PATCH = _serve

            def log_message(self, *_: Any) -> None:
                """Quiet: the tests assert on recorded requests."""

        return Handler
