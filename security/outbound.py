"""SSRF-safe outbound HTTP.

``check_url(url)`` accepts a URL only if it is ``https`` (plain ``http`` only
with ``DEBUG``), carries no credentials, uses the default port (or one in
``OUTBOUND_ALLOWED_PORTS``), names its host canonically (no decimal, octal,
hex or shortened IPv4, no IPv6 zone), and every address the name resolves to
is public: loopback, private, link-local, CGNAT, multicast, reserved,
documentation, unspecified, IPv4-mapped/compatible and IPv4-embedding IPv6
(6to4, NAT64, Teredo) are refused. It raises :class:`UnsafeURL` with the reason.

``request(...)`` resolves the name once and connects to that address (no DNS
rebinding between check and connect), keeping the name for SNI, certificate
verification and the ``Host`` header; it follows at most 3 redirects, checking
every hop; and stops reading past ``OUTBOUND_MAX_RESPONSE_BYTES``.

Time: every socket operation (connect, TLS handshake, sending, reading the status line,
the headers and the body) waits at most the connect or read timeout
(``OUTBOUND_CONNECT_TIMEOUT``, ``OUTBOUND_READ_TIMEOUT``) *and* at most until the overall
deadline, connect timeout + 2 × read timeout from the start of the request (redirect hops
included). A server that drips one byte at a time, each within the read timeout, is cut off
at the deadline with :class:`OutboundTimeout`, whatever phase of the exchange it is in.
"""

from __future__ import annotations

import io
import ipaddress
import json as jsonlib
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import urllib3
import urllib3.connection
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_BLOCKED: list[tuple[str, str]] = [
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a carrier-grade NAT (CGNAT) address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "an IETF protocol assignment address"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a 6to4 relay address"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("::ffff:0:0/96", "an IPv4-mapped IPv6 address"),
    ("::/96", "an IPv4-compatible IPv6 address"),
    ("64:ff9b::/96", "a NAT64 (IPv4-embedded) address"),
    ("64:ff9b:1::/48", "a local NAT64 (IPv4-embedded) address"),
    ("100::/64", "a discard-only address"),
    ("2001::/32", "a Teredo (IPv4-embedded) address"),
    ("2001:db8::/32", "a documentation address"),
    ("2001:10::/28", "an ORCHID address"),
    ("2002::/16", "a 6to4 (IPv4-embedded) address"),
    ("fc00::/7", "a unique-local (private) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
]
BLOCKED_NETWORKS = [(ipaddress.ip_network(net), why) for net, why in _BLOCKED]
_CANONICAL_V4 = re.compile(
    r"^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)$"
)
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|\d+)$", re.IGNORECASE)
_HOST_CHARS = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$")
REDIRECTS = (301, 302, 303, 307, 308)


class UnsafeURL(ValueError):
    """The URL may not be fetched; ``reason`` says why."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"Refusing to fetch {url[:200]!r}: {reason}")
        self.reason = reason


class OutboundError(Exception):
    """The request was allowed but failed (timeout, too large, too many redirects, connection)."""


class OutboundTimeout(OutboundError):
    """The server was too slow: a connect or read timeout, or the overall deadline passed."""


def overall_deadline_seconds() -> float:
    """The documented bound on one request, redirects included: connect + 2 × read timeout."""
    return _connect_timeout() + 2 * _read_timeout()


def _connect_timeout() -> float:
    return float(getattr(settings, "OUTBOUND_CONNECT_TIMEOUT", 3.0))


def _read_timeout() -> float:
    return float(getattr(settings, "OUTBOUND_READ_TIMEOUT", 10.0))


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str
    port: int
    request_target: str
    address: str
    addresses: tuple[str, ...] = field(default=())

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def address_problem(ip: IPAddress) -> str | None:
    """Why this address may not be contacted, or ``None`` if it is public."""
    for network, why in BLOCKED_NETWORKS:
        if ip.version == network.version and ip in network:
            return why
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_reserved or ip.is_unspecified:
        return "a non-public address"
    if not ip.is_global:
        return "a non-global address"
    return None


def _loopback_allowed() -> bool:
    return bool(getattr(settings, "OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS", False))


def _parse_host(url: str, raw_host: str, bracketed: bool) -> tuple[str, IPAddress | None]:
    if bracketed:
        if "%" in raw_host:
            raise UnsafeURL(url, "IPv6 zone identifiers are not allowed")
        try:
            return raw_host, ipaddress.IPv6Address(raw_host)
        except ValueError:
            raise UnsafeURL(url, "the IPv6 address is malformed") from None
    trailing_dot = raw_host.endswith(".")
    host = raw_host[:-1] if trailing_dot else raw_host
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise UnsafeURL(url, "the host name is not a valid international domain name") from None
    labels = host.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        # A name whose last label is a number is an IPv4 address to a browser or libc: only
        # the canonical dotted quad is accepted (no 2130706433, 0177.0.0.1, 0x7f.1, 127.1).
        if trailing_dot or not _CANONICAL_V4.match(host):
            raise UnsafeURL(url, "decimal, octal, hex or shortened IPv4 spellings are not allowed")
        return host, ipaddress.IPv4Address(host)
    if not _HOST_CHARS.match(host):
        raise UnsafeURL(url, "the host name has characters a DNS name cannot have")
    if host == "localhost" or host.endswith(".localhost"):
        raise UnsafeURL(url, "localhost is not allowed")
    return host, None


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return []
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if address not in seen:
            seen.append(address)
    return seen


def check_url(url: str) -> Target:
    """Validate ``url`` and resolve its host once; raise :class:`UnsafeURL` with the reason."""
    if not isinstance(url, str) or not url:
        raise UnsafeURL(str(url), "no URL given")
    if any(ord(ch) < 0x21 or ch in "\\\x7f" for ch in url):
        raise UnsafeURL(url, "whitespace, control characters and backslashes are not allowed")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeURL(url, "the URL or its port is malformed") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UnsafeURL(url, f"only https URLs are allowed, not {scheme or 'a relative URL'}")
    if "@" in parts.netloc or parts.username or parts.password:
        raise UnsafeURL(url, "credentials in the URL are not allowed")
    bracketed = "[" in parts.netloc
    raw_host = parts.hostname or ""
    if not raw_host:
        raise UnsafeURL(url, "the URL has no host")
    host, literal = _parse_host(url, raw_host, bracketed)
    default_port = 443 if scheme == "https" else 80
    port = port if port is not None else default_port
    if literal is not None:
        addresses = [literal.compressed]
    else:
        addresses = resolve(host, port)
        if not addresses:
            raise UnsafeURL(url, f"the host name {host!r} does not resolve")
    loopback_test = _loopback_allowed() and all(a == "127.0.0.1" for a in addresses)
    if not loopback_test:
        for address in addresses:
            problem = address_problem(ipaddress.ip_address(address))
            if problem:
                raise UnsafeURL(url, f"{host} resolves to {address}, {problem}")
        if scheme == "http" and not settings.DEBUG:
            raise UnsafeURL(url, "only https URLs are allowed (plain http only in DEBUG)")
        if port != default_port and port not in getattr(settings, "OUTBOUND_ALLOWED_PORTS", []):
            raise UnsafeURL(url, f"port {port} is not allowed (add it to OUTBOUND_ALLOWED_PORTS)")
    request_target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(
        url=url,
        scheme=scheme,
        host=host,
        port=port,
        request_target=request_target,
        address=addresses[0],
        addresses=tuple(addresses),
    )


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    content: bytes
    url: str
    redirects: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class _DeadlineExceeded(TimeoutError):
    """Raised by a socket operation started (or waiting) past the overall deadline."""


class _DeadlineSocket:
    """A connected (possibly TLS) socket whose every operation waits at most its own timeout
    (what urllib3 sets: the connect or read timeout) and at most until ``deadline``.

    A timeout on a socket bounds one ``recv``, so a server that drips a byte just inside it
    could otherwise hold the request for as long as it likes; here each ``recv``/``send`` gets
    ``min(timeout, time left)`` and none starts once the time is up.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._timeout = sock.gettimeout()
        self._io_refs = 0
        self._closed = False

    def _arm(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise _DeadlineExceeded("the overall deadline passed")
        self._sock.settimeout(left if self._timeout is None else min(self._timeout, left))

    def settimeout(self, value: float | None) -> None:
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def recv(self, *args: Any) -> bytes:
        self._arm()
        return self._sock.recv(*args)

    def recv_into(self, *args: Any) -> int:
        self._arm()
        return self._sock.recv_into(*args)

    def send(self, *args: Any) -> int:
        self._arm()
        return self._sock.send(*args)

    def sendall(self, data: Any, flags: int = 0) -> None:
        # One send at a time, each armed: a TLS socket's sendall loops over send() in Python,
        # and a server that reads slowly must not stretch the exchange either.
        with memoryview(data) as view, view.cast("B") as octets:
            sent = 0
            while sent < len(octets):
                self._arm()
                sent += self._sock.send(octets[sent:], flags) if flags else self._sock.send(octets[sent:])

    def makefile(self, mode: str = "rb", buffering: int | None = None, **kwargs: Any) -> io.BufferedReader:
        if mode != "rb":
            raise ValueError("only binary reading is supported")
        raw = socket.SocketIO(self, "rb")  # type: ignore[arg-type]
        self._io_refs += 1
        return io.BufferedReader(raw, buffering if buffering and buffering > 0 else io.DEFAULT_BUFFER_SIZE)

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed:
            self.close()

    def close(self) -> None:
        self._closed = True
        if self._io_refs <= 0:
            self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _DeadlineConnection(urllib3.connection.HTTPConnection):
    deadline: float = float("inf")

    def connect(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _DeadlineExceeded("the overall deadline passed before connecting")
        # The TCP connect and (for https) the whole TLS handshake wait at most this long.
        self.timeout = left if self.timeout is None else min(float(self.timeout), left)
        super().connect()
        self.sock = _DeadlineSocket(self.sock, self.deadline)  # type: ignore[assignment]


class _DeadlineHTTPSConnection(_DeadlineConnection, urllib3.connection.HTTPSConnection):
    pass


class _DeadlineHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _DeadlineConnection
    deadline: float = float("inf")

    def _new_conn(self) -> Any:
        conn: Any = super()._new_conn()
        conn.deadline = self.deadline
        return conn


class _DeadlineHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection
    deadline: float = float("inf")

    def _new_conn(self) -> Any:
        conn: Any = super()._new_conn()
        conn.deadline = self.deadline
        return conn


def _pool(target: Target, timeout: urllib3.Timeout, deadline: float) -> urllib3.HTTPConnectionPool:
    pool: _DeadlineHTTPPool | _DeadlineHTTPSPool
    if target.scheme == "https":
        ca_bundle = getattr(settings, "OUTBOUND_CA_BUNDLE", "") or None
        pool = _DeadlineHTTPSPool(
            host=target.address,
            port=target.port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_bundle,
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    else:
        pool = _DeadlineHTTPPool(
            host=target.address, port=target.port, timeout=timeout, retries=False, maxsize=1
        )
    pool.deadline = deadline
    return pool


def _too_slow(target: Target, deadline: float) -> OutboundTimeout | None:
    """The error to raise if the overall deadline has passed (a millisecond's slack for rounding)."""
    if time.monotonic() < deadline - 0.001:
        return None
    return OutboundTimeout(
        f"Timed out talking to {target.host}: no complete answer within "
        f"{overall_deadline_seconds():g} seconds."
    )


def _send(
    target: Target, method: str, headers: dict[str, str], body: bytes | None, deadline: float, max_bytes: int
) -> tuple[int, dict[str, str], bytes]:
    timeout = urllib3.Timeout(connect=_connect_timeout(), read=_read_timeout())
    if (late := _too_slow(target, deadline)) is not None:
        raise late
    pool = _pool(target, timeout, deadline)
    try:
        answer = pool.urlopen(
            method,
            target.request_target,
            body=body,
            headers={**headers, "Host": target.host_header},
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            declared = answer.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise OutboundError(f"The response is larger than {max_bytes} bytes.")
            chunks: list[bytes] = []
            size = 0
            for chunk in answer.stream(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise OutboundError(f"The response is larger than {max_bytes} bytes.")
                chunks.append(chunk)
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}, b"".join(chunks)
        finally:
            answer.release_conn()
    except urllib3.exceptions.TimeoutError as exc:
        raise _too_slow(target, deadline) or OutboundTimeout(f"Timed out talking to {target.host}.") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        late = _too_slow(target, deadline)
        if late is not None:
            raise late from exc
        if isinstance(exc, urllib3.exceptions.HTTPError):
            raise OutboundError(f"Could not talk to {target.host}: {exc.__class__.__name__}.") from exc
        raise
    finally:
        pool.close()


def request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    data: bytes | str | None = None,
    json: Any = None,
    max_bytes: int | None = None,
) -> Response:
    """Make one HTTP request under the rules above; redirects are followed and checked."""
    method = method.upper()
    headers = dict(headers or {})
    body: bytes | None = data.encode() if isinstance(data, str) else data
    if json is not None:
        body = jsonlib.dumps(json).encode()
        headers.setdefault("Content-Type", "application/json")
    limit: int = max_bytes or int(getattr(settings, "OUTBOUND_MAX_RESPONSE_BYTES", 5 * 1024 * 1024))
    max_redirects = int(getattr(settings, "OUTBOUND_MAX_REDIRECTS", 3))
    deadline = time.monotonic() + overall_deadline_seconds()
    hops: list[str] = []
    current = url
    origin = None
    while True:
        target = check_url(current)
        origin = origin or (target.scheme, target.host, target.port)
        status, answer_headers, content = _send(target, method, headers, body, deadline, limit)
        location = answer_headers.get("location")
        if status not in REDIRECTS or not location:
            return Response(status, answer_headers, content, current, hops)
        if len(hops) >= max_redirects:
            raise OutboundError(f"More than {max_redirects} redirects.")
        hops.append(current)
        current = urljoin(current, location)
        if status == 303 or (status in (301, 302) and method == "POST"):
            method, body = "GET", None
            headers.pop("Content-Type", None)
        next_target = urlsplit(current)
        if (
            next_target.scheme,
            next_target.hostname,
            next_target.port or (443 if next_target.scheme == "https" else 80),
        ) != origin:
            for name in list(headers):
                if name.lower() in ("authorization", "cookie", "proxy-authorization"):
                    headers.pop(name)


def get(url: str, **kwargs: Any) -> Response:
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> Response:
    return request("POST", url, **kwargs)
