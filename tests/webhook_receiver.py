"""A customer's webhook endpoint for the tests: verifies every request with the `standardwebhooks`
library (the reference implementation receivers use) and answers as told, e.g. failing at random."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from drippulse.local_http import LocalHttpServer

Answer = Callable[[str], int]
"""webhook-id -> the status code to answer with."""


def always(status: int) -> Answer:
    return lambda _: status


def flaky(failure_rate: float, seed: int = 7) -> Answer:
    rng = random.Random(seed)
    lock = threading.Lock()

    def answer(_: str) -> int:
        with lock:
            return 500 if rng.random() < failure_rate else 200

    return answer


class Receiver(LocalHttpServer):
    def __init__(self, answer: Answer = always(200), delay_s: float = 0.0) -> None:
        self.answer = answer
        self.delay_s = delay_s
        self.concurrent = 0
        self.max_concurrent = 0
        self.secrets: list[str] = []
        self.answers: dict[str, list[int]] = defaultdict(list)
        """webhook-id -> the status of each request that carried it, in arrival order."""
        self.bodies: dict[str, Any] = {}
        self.unverified: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        super().__init__(self._handler())

    @property
    def url(self) -> str:
        return f"{self.base_url}/hooks"

    def delivered(self) -> dict[str, int]:
        """webhook-id -> how many requests with it were answered 2xx."""
        with self._lock:
            return {key: sum(1 for s in statuses if 200 <= s < 300) for key, statuses in self.answers.items()}

    def _verified(self, body: bytes, headers: dict[str, str]) -> Any:
        for secret in self.secrets:
            try:
                return Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                message_id = headers.get("webhook-id", "")
                with receiver._lock:
                    receiver.concurrent += 1
                    receiver.max_concurrent = max(receiver.max_concurrent, receiver.concurrent)
                time.sleep(receiver.delay_s)
                payload = receiver._verified(body, headers)
                status = receiver.answer(message_id) if payload is not None else 401
                with receiver._lock:
                    receiver.headers.append(headers)
                    if payload is None:
                        receiver.unverified.append(message_id)
                    else:
                        receiver.bodies[message_id] = payload
                    receiver.answers[message_id].append(status)
                    receiver.concurrent -= 1
                reply = b'{"received": true}'
                self.send_response(status)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_: Any) -> None:
                """Quiet: the tests assert on what was received, not on access logs."""

        return Handler
