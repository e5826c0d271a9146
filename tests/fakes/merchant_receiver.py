"""A merchant's webhook receiver on 127.0.0.1: records what it gets, answers what the test says."""

from __future__ import annotations

import time
from collections import deque

from tests.fakes._server import FakeServer, RecordedRequest, Response


class MerchantReceiver(FakeServer):
    """``answers`` is a queue of (status, body) used in turn; when empty, ``default`` answers."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: deque[tuple[int, bytes, dict[str, str]]] = deque()
        self.default: tuple[int, bytes, dict[str, str]] = (200, b'{"received": true}', {})
        self.delay = 0.0

    def reset(self) -> None:
        self.clear_requests()
        self.answers.clear()
        self.default = (200, b'{"received": true}', {})
        self.delay = 0.0

    def answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.answers.append((status, body, headers or {}))

    def always(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.default = (status, body, headers or {})

    def handle(self, request: RecordedRequest) -> Response:
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            status, body, headers = self.answers.popleft() if self.answers else self.default
        return Response(status, body, "application/json", headers)

    @property
    def posts(self) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST"]
