"""The demo's customer endpoint: receives the Lead Qualification notifications and checks each one
the way a customer would, with the `standardwebhooks` library, so the demo shows signed delivery end
to end rather than claiming it."""

from __future__ import annotations

import threading

from standardwebhooks import Webhook, WebhookVerificationError

from drippulse.local_http import LocalHttpServer, Reply


class DemoReceiver(LocalHttpServer):
    def __init__(self) -> None:
        self.verified: set[str] = set()
        self.rejected = 0
        self._verifier: Webhook | None = None
        self._lock = threading.Lock()
        super().__init__()

    @property
    def url(self) -> str:
        return f"{self.base_url}/hooks/lead-qualified"

    def trust(self, secret: str) -> None:
        """The subscription's signing secret, as its owner would configure their endpoint."""
        self._verifier = Webhook(secret)

    def respond(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        try:
            if self._verifier is None:
                raise WebhookVerificationError("no secret configured")
            self._verifier.verify(body, headers)
        except WebhookVerificationError:
            with self._lock:
                self.rejected += 1
            return Reply(401)
        with self._lock:
            self.verified.add(headers["webhook-id"])
        return Reply(204)
