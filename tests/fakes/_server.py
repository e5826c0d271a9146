"""The threaded loopback HTTP server both vendor fakes are built on."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class RecordedRequest:
    """One request as the fake received it (headers with lower-case names)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    params: Any = None  # decoded by the fake: nested dict for Stripe, dict from XML for Braintree
    status: int = 0  # what the fake answered
    replayed: bool = False
    dropped: bool = False  # handled, but the answer was never sent (see FakeServer.drop_answers)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


class _ThreadingServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeServer:
    """Start with :meth:`start` (or ``with``), stop with :meth:`stop`; ``url`` is the base address."""

    host = "127.0.0.1"

    def __init__(self, *, port: int = 0) -> None:
        self._requested_port = port
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None
        self.lock = threading.RLock()
        self.requests: list[RecordedRequest] = []
        self._drops: list[tuple[str, re.Pattern[str], float]] = []

    # --- lifecycle ---

    def start(self) -> FakeServer:
        if self._server is not None:
            return self
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once, no 40 ms ACK stalls
            server_version = f"{type(fake).__name__}/1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = RecordedRequest(
                    method=self.command,
                    path=parts.path,
                    query=parts.query,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                try:
                    response = fake.handle(request)
                except Exception as exc:  # noqa: BLE001 - a fake must answer, not hang the client
                    response = fake.internal_error(exc)
                request.status = response.status
                stall = fake._take_drop(request)
                request.dropped = stall is not None
                with fake.lock:
                    fake.requests.append(request)
                if stall is not None:
                    # The work is done, but the answer never leaves: the client times out, or
                    # sees the connection close with no response.
                    time.sleep(stall)
                    self.close_connection = True
                    return
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(response.body)

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._server = _ThreadingServer((self.host, self._requested_port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake is not running; call start()")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def clear_requests(self) -> None:
        with self.lock:
            self.requests.clear()

    def drop_answers(self, method: str, path: str, *, count: int = 1, stall: float = 0.0) -> None:
        """Handle the next ``count`` requests to ``method`` ``path`` (a regular expression the
        whole path must match) as usual, then send no answer: wait ``stall`` seconds (longer
        than the client's timeout, for a real timeout) and close the connection. The vendor did
        the work and its answer was lost, as when a request times out after reaching it."""
        with self.lock:
            self._drops.extend([(method.upper(), re.compile(path), stall)] * count)

    def _take_drop(self, request: RecordedRequest) -> float | None:
        with self.lock:
            for index, (method, pattern, stall) in enumerate(self._drops):
                if method == request.method and pattern.fullmatch(request.path):
                    del self._drops[index]
                    return stall
        return None

    # --- to implement ---

    def handle(self, request: RecordedRequest) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

    def internal_error(self, exc: Exception) -> Response:
        return Response(500, f"fake error: {type(exc).__name__}: {exc}".encode(), "text/plain")
