"""A local OpenAI-compatible chat-completions endpoint for the summary tests: records every request
and answers as told, or holds each request until the test lets it answer."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import orjson

from drippulse.local_http import LocalHttpServer, Reply


def completion(content: Any) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        }
    )


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class ChatCompletionsServer(LocalHttpServer):
    def __init__(self, status: int = 200, body: bytes = completion("A summary from the provider.")) -> None:
        self.status = status
        self.body = body
        self.held: threading.Event | None = None
        """When set to an Event, every request waits for it before it is answered, but at most 20 s: less
        than the summarizer's own client timeout, so a provider timeout that is not honoured shows as an
        answer from the provider."""
        self.arrived = threading.Event()
        """Set once a request has been received (and recorded)."""
        self.received: list[Received] = []
        self._lock = threading.Lock()
        super().__init__()

    def respond(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        with self._lock:
            self.received.append(Received(method, path, headers, orjson.loads(body)))
        self.arrived.set()
        if self.held is not None:
            self.held.wait(timeout=20)
        return Reply(self.status, self.body, {"content-type": "application/json"})
