"""A hostile HTTP server on 127.0.0.1 that answers one byte at a time ("slowloris" in reverse).

Every request gets the same complete response; the first ``fast`` bytes go out at once and the
rest one byte every ``interval`` seconds. With ``interval`` under the client's read timeout no
single read ever times out, so only an overall deadline can stop the client. ``fast=0`` drips
from the status line on; ``fast=len(head)`` sends the status line and headers whole and drips
the body.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Exchange:
    """One connection: what was asked, how many response bytes went out, when the client left."""

    request: bytes = b""
    sent: int = 0
    started: float = field(default_factory=time.monotonic)
    hung_up_after: float | None = None  # seconds after the request, when the client closed on us
    finished: bool = False  # the whole response was sent


class DripServer:
    host = "127.0.0.1"

    def __init__(self, *, interval: float, body: bytes = b'{"received": true}', status: int = 200) -> None:
        self.interval = interval
        self.head = (
            f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        self.body = body
        self.fast = 0
        self.exchanges: list[Exchange] = []
        self._stop = threading.Event()
        self._listener = socket.create_server((self.host, 0))
        self._listener.settimeout(0.05)
        self._thread = threading.Thread(target=self._serve, name="DripServer", daemon=True)

    @property
    def response(self) -> bytes:
        return self.head + self.body

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def drip_headers(self) -> DripServer:
        self.fast = 0
        return self

    def drip_body(self) -> DripServer:
        self.fast = len(self.head)
        return self

    def start(self) -> DripServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> DripServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for_hang_up(self, timeout: float = 5.0) -> Exchange:
        """The latest exchange, once the client has closed it (or it finished, or ``timeout``)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            last = self.exchanges[-1] if self.exchanges else None
            if last is not None and (last.hung_up_after is not None or last.finished):
                break
            time.sleep(0.01)
        return self.exchanges[-1]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> bytes:
        data = b""
        conn.settimeout(5)
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return data
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            chunk = conn.recv(4096)
            if not chunk:
                break
            rest += chunk
        return head + b"\r\n\r\n" + rest

    def _answer(self, conn: socket.socket) -> None:
        exchange = Exchange()
        self.exchanges.append(exchange)
        with conn:
            try:
                exchange.request = self._read_request(conn)
                exchange.started = time.monotonic()
                response = self.response
                conn.sendall(response[: self.fast])
                exchange.sent = self.fast
                for index in range(self.fast, len(response)):
                    if self._stop.wait(self.interval):
                        return
                    conn.sendall(response[index : index + 1])
                    exchange.sent += 1
                exchange.finished = True
            except OSError:
                exchange.hung_up_after = time.monotonic() - exchange.started
