"""A customer's webhook endpoint for the tests: verifies every request with the `standardwebhooks`
library (the reference implementation receivers use) and answers as told, e.g. failing at random."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from drippulse.local_http import LocalHttpServer, Reply

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
    def __init__(self, answer: Answer = always(200), delay_s: float = 0.0, held: threading.Event | None = None) -> None:
        self.answer = answer
        self.delay_s = delay_s
        self.held = held
        """When given, every request waits until it is set: an endpoint that hangs until the test
        lets it answer."""
        self.concurrent = 0
        self.max_concurrent = 0
        self.secrets: list[str] = []
        self.answers: dict[str, list[int]] = defaultdict(list)
        """webhook-id -> the status of each request that carried it, in arrival order."""
        self.bodies: dict[str, Any] = {}
        self.unverified: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        super().__init__()

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

    def respond(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        message_id = headers.get("webhook-id", "")
        with self._lock:
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
        time.sleep(self.delay_s)
        if self.held is not None:
            self.held.wait(timeout=60)
        payload = self._verified(body, headers)
        status = self.answer(message_id) if payload is not None else 401
        with self._lock:
            self.headers.append(headers)
            if payload is None:
                self.unverified.append(message_id)
            else:
                self.bodies[message_id] = payload
            self.answers[message_id].append(status)
            self.concurrent -= 1
        return Reply(status, b'{"received": true}')
