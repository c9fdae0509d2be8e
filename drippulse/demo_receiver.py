"""The demo's customer endpoint: receives the Lead Qualification notifications and checks each one
the way a customer would, with the `standardwebhooks` library, so the demo shows signed delivery end
to end rather than claiming it."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from drippulse.local_http import LocalHttpServer


class DemoReceiver(LocalHttpServer):
    def __init__(self) -> None:
        self.verified: set[str] = set()
        self.rejected = 0
        self._verifier: Webhook | None = None
        self._lock = threading.Lock()
        super().__init__(self._handler())

    @property
    def url(self) -> str:
        return f"{self.base_url}/hooks/lead-qualified"

    def trust(self, secret: str) -> None:
        """The subscription's signing secret, as its owner would configure their endpoint."""
        self._verifier = Webhook(secret)

    def _receive(self, body: bytes, headers: dict[str, str]) -> int:
        try:
            if self._verifier is None:
                raise WebhookVerificationError("no secret configured")
            self._verifier.verify(body, headers)
        except WebhookVerificationError:
            with self._lock:
                self.rejected += 1
            return 401
        with self._lock:
            self.verified.add(headers["webhook-id"])
        return 204

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status = receiver._receive(body, {k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                """Quiet: the demo prints a summary instead."""

        return Handler
