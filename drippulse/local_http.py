"""A threaded HTTP server on a free loopback port: the demo's endpoint and the tests' stand-ins for
customer endpoints and CRMs. Subclasses say only how to answer (`respond`); reading the request and
writing the reply is done here once."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class LocalHttpServer:
    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def respond(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        """The answer to one request; `headers` are lower-cased. Called from the server's threads."""
        raise NotImplementedError

    def respond_to(self, method: str, path: str, query: str, body: bytes, headers: dict[str, str]) -> Reply:
        """The same, for servers that also read the query string."""
        return self.respond(method, path, body, headers)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                target = urlsplit(self.path)
                reply = server.respond_to(self.command, target.path, target.query, body, headers)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                try:
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client gave up waiting (a timeout under test): nothing to tell it

            do_GET = do_POST = do_PATCH = do_PUT = _serve

            def log_message(self, *_: Any) -> None:
                """Quiet: callers report what was received, not access logs."""

        return Handler
