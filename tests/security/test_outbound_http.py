"""Outbound HTTP refuses SSRF targets, pins the resolved address, and bounds redirects, time and size."""

from __future__ import annotations

import datetime
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest

from security import outbound
from security.outbound import OutboundError, OutboundTimeout, UnsafeURL, check_url
from tests.fakes.drip_server import DripServer

_real_getaddrinfo = socket.getaddrinfo


class FakeDNS:
    """Answers for made-up names; IP literals (what urllib3 resolves) go to the real resolver."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, host, port, *args, **kwargs):  # noqa: ANN001 - socket.getaddrinfo's signature
        name = host.decode() if isinstance(host, bytes) else host
        if name in self.answers:
            self.asked.append(name)
            queue = self.answers[name]
            address = queue.pop(0) if len(queue) > 1 else queue[0]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port or 0, 0, 0) if family == socket.AF_INET6 else (address, port or 0)
            return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]
        try:
            import ipaddress

            ipaddress.ip_address(name)
        except ValueError:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return _real_getaddrinfo(host, port, *args, **kwargs)


@pytest.fixture
def dns(monkeypatch) -> FakeDNS:
    fake = FakeDNS(
        {
            "api.example.com": ["93.184.216.34"],
            "both.example.com": ["93.184.216.34"],
            "internal.example.com": ["10.1.2.3"],
            "metadata.example.com": ["169.254.169.254"],
            "cgnat.example.com": ["100.64.1.1"],
            "mapped.example.com": ["::ffff:127.0.0.1"],
            "v6.example.com": ["2606:4700:4700::1111"],
            "ula.example.com": ["fd00::1"],
            "mixed.example.com": ["93.184.216.34"],
        }
    )
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


REFUSED = [
    ("http://api.example.com/", "only https"),
    ("ftp://api.example.com/", "only https"),
    ("file:///etc/passwd", "only https"),
    ("gopher://api.example.com:70/", "only https"),
    ("//api.example.com/x", "only https"),
    ("https://user:pass@api.example.com/", "credentials"),
    ("https://api.example.com@internal.example.com/", "credentials"),
    ("https://api.example.com:8443/", "port 8443 is not allowed"),
    ("https://api.example.com:99999/", "malformed"),
    ("https://127.0.0.1/", "loopback"),
    ("https://127.1/", "shortened IPv4"),
    ("https://2130706433/", "decimal, octal, hex"),
    ("https://0x7f000001/", "decimal, octal, hex"),
    ("https://0177.0.0.1/", "decimal, octal, hex"),
    ("https://0x7f.0.0.1/", "decimal, octal, hex"),
    ("https://127.000.000.001/", "decimal, octal, hex"),
    ("https://1.2.3.4./", "decimal, octal, hex"),
    ("https://0.0.0.0/", "unspecified"),
    ("https://10.0.0.1/", "private"),
    ("https://172.16.5.4/", "private"),
    ("https://192.168.1.1/", "private"),
    ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ("https://100.64.0.1/", "carrier-grade NAT"),
    ("https://224.0.0.1/", "multicast"),
    ("https://240.0.0.1/", "reserved"),
    ("https://255.255.255.255/", "reserved"),
    ("https://192.0.2.10/", "documentation"),
    ("https://198.18.0.1/", "benchmarking"),
    ("https://[::1]/", "loopback"),
    ("https://[::]/", "unspecified"),
    ("https://[::ffff:127.0.0.1]/", "IPv4-mapped"),
    ("https://[::ffff:7f00:1]/", "IPv4-mapped"),
    ("https://[::127.0.0.1]/", "IPv4-compatible"),
    ("https://[64:ff9b::a9fe:a9fe]/", "NAT64"),
    ("https://[2002:a9fe:a9fe::]/", "6to4"),
    ("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "Teredo"),
    ("https://[fe80::1%25eth0]/", "zone"),
    ("https://[fe80::1]/", "link-local"),
    ("https://[fd00::1]/", "unique-local"),
    ("https://[ff02::1]/", "multicast"),
    ("https://[2001:db8::1]/", "documentation"),
    ("https://localhost/", "localhost"),
    ("https://foo.localhost/", "localhost"),
    ("https://internal.example.com/", "10.1.2.3, a private address"),
    ("https://metadata.example.com/", "169.254.169.254, a link-local"),
    ("https://cgnat.example.com/", "carrier-grade NAT"),
    ("https://mapped.example.com/", "IPv4-mapped"),
    ("https://ula.example.com/", "unique-local"),
    ("https://nonexistent.example.com/", "does not resolve"),
    ("https://api.example.com\\@internal.example.com/", "backslashes"),
    ("https://api.example.com /", "whitespace"),
    ("https://api.exa\nmple.com/", "control characters"),
    ("https://under_score.example.com/", "characters a DNS name cannot have"),
    ("https:///path-only", "no host"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_unsafe_urls_are_refused_with_a_reason(dns, settings, url: str, reason: str) -> None:
    settings.DEBUG = False
    with pytest.raises(UnsafeURL) as exc:
        check_url(url)
    assert reason in exc.value.reason, exc.value.reason
    with pytest.raises(UnsafeURL):
        outbound.get(url)


def test_the_matrix_is_large_enough() -> None:
    assert len(REFUSED) >= 30


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/v1/charges?limit=3",
        "https://API.Example.COM:443/",
        "https://api.example.com./",
        "https://93.184.216.34/",
        "https://v6.example.com/",
        "https://[2606:4700:4700::1111]/",
    ],
)
def test_public_https_urls_pass(dns, url: str) -> None:
    target = check_url(url)
    assert target.scheme == "https" and target.port == 443
    assert target.address in ("93.184.216.34", "2606:4700:4700::1111")


def test_plain_http_and_extra_ports_need_explicit_configuration(dns, settings) -> None:
    settings.DEBUG = True
    assert check_url("http://api.example.com/").scheme == "http"
    settings.DEBUG = False
    settings.OUTBOUND_ALLOWED_PORTS = [8443]
    assert check_url("https://api.example.com:8443/").port == 8443


def test_a_name_with_any_private_answer_is_refused(monkeypatch, settings) -> None:
    def answers(host, port, *args, **kwargs):  # noqa: ANN001
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", answers)
    with pytest.raises(UnsafeURL, match="loopback"):
        check_url("https://mixed.example.com/")


def test_loopback_needs_the_test_only_switch_which_is_off_by_default(dns, settings) -> None:
    from fintech_portal import settings as project_settings

    assert project_settings.OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS is False
    dns.answers["local.example.com"] = ["127.0.0.1"]
    with pytest.raises(UnsafeURL, match="loopback"):
        check_url("http://local.example.com:8000/")


# --- Against a local server ------------------------------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str]] = []  # noqa: RUF012

    def log_message(self, *args: object) -> None:
        return

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        Handler.seen.append((self.path, self.headers.get("Host", "")))
        port = self.server.server_address[1]
        if self.path.startswith("/hop/"):
            n = int(self.path.rsplit("/", 1)[1])
            self.send_response(302)
            self.send_header("Location", f"http://local.example.com:{port}/hop/{n - 1}" if n else "/done")
            self.end_headers()
            return
        if self.path == "/to-metadata":
            self.send_response(302)
            self.send_header("Location", "http://metadata.example.com/latest/meta-data/")
            self.end_headers()
            return
        if self.path == "/big":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"x" * 200_000)
            return
        if self.path == "/slow":
            time.sleep(1.0)
        body = b'{"ok": true}'
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up (the timeout test)


@pytest.fixture
def server(dns, settings) -> Iterator[int]:
    settings.OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS = True
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Handler.seen = []
    port = httpd.server_address[1]
    dns.answers["local.example.com"] = ["127.0.0.1"]
    yield port
    httpd.shutdown()
    httpd.server_close()


def test_the_name_is_resolved_once_and_kept_in_the_host_header(server, dns) -> None:
    # A rebinding DNS answers 127.0.0.1 first, then the metadata address: we never ask twice.
    dns.answers["local.example.com"] = ["127.0.0.1", "169.254.169.254"]
    response = outbound.get(f"http://local.example.com:{server}/hello?x=1")
    assert response.status == 200 and response.json() == {"ok": True}
    assert Handler.seen == [("/hello?x=1", f"local.example.com:{server}")]
    assert dns.asked.count("local.example.com") == 1


def test_up_to_three_redirects_are_followed_and_a_fourth_is_refused(server) -> None:
    assert outbound.get(f"http://local.example.com:{server}/hop/2").redirects[0].endswith("/hop/2")
    assert len(outbound.get(f"http://local.example.com:{server}/hop/2").redirects) == 3
    with pytest.raises(OutboundError, match="More than 3 redirects"):
        outbound.get(f"http://local.example.com:{server}/hop/3")


def test_every_redirect_hop_is_checked(server) -> None:
    with pytest.raises(UnsafeURL, match="link-local"):
        outbound.get(f"http://local.example.com:{server}/to-metadata")


def test_responses_over_the_size_cap_are_cut_off(server, settings) -> None:
    settings.OUTBOUND_MAX_RESPONSE_BYTES = 100_000
    with pytest.raises(OutboundError, match="larger than 100000 bytes"):
        outbound.get(f"http://local.example.com:{server}/big")


def test_a_slow_server_times_out(server, settings) -> None:
    settings.OUTBOUND_READ_TIMEOUT = 0.2
    started = time.monotonic()
    with pytest.raises(OutboundError, match="Timed out"):
        outbound.get(f"http://local.example.com:{server}/slow")
    assert time.monotonic() - started < 1.0


def test_https_verifies_the_certificate_for_the_name_and_sends_it_as_sni(dns, settings, tmp_path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "secure.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("secure.example.com")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    sni: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.sni_callback = lambda sock, server_name, ctx: sni.append(server_name)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    settings.OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS = True
    settings.OUTBOUND_CA_BUNDLE = str(cert_file)
    dns.answers["secure.example.com"] = ["127.0.0.1"]
    dns.answers["other.example.com"] = ["127.0.0.1"]
    Handler.seen = []
    try:
        response = outbound.get(f"https://secure.example.com:{port}/tls")
        assert response.status == 200
        assert sni == ["secure.example.com"]
        assert Handler.seen == [("/tls", f"secure.example.com:{port}")]
        with pytest.raises(OutboundError):  # the certificate is not for this name
            outbound.get(f"https://other.example.com:{port}/tls")
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- A server that drips its answer: the overall deadline holds in every phase ---------------------


@pytest.fixture
def drip(dns, settings) -> Iterator[DripServer]:
    # Each byte comes 50 ms after the last, well inside the 200 ms read timeout; the whole
    # answer would take seconds, far past the 0.2 + 2 × 0.2 = 0.6 s overall deadline.
    settings.OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS = True
    settings.OUTBOUND_CONNECT_TIMEOUT = 0.2
    settings.OUTBOUND_READ_TIMEOUT = 0.2
    dns.answers["drip.example.com"] = ["127.0.0.1"]
    with DripServer(interval=0.05, body=b'{"ok": true, "padding": "' + b"x" * 200 + b'"}') as server:
        yield server


@pytest.mark.parametrize("phase", ["status line and headers", "body"])
def test_a_server_dripping_bytes_within_the_read_timeout_is_cut_off_at_the_overall_deadline(
    drip, phase: str
) -> None:
    if phase == "body":
        drip.drip_body()
    else:
        drip.drip_headers()
    assert outbound.overall_deadline_seconds() == pytest.approx(0.6)
    started = time.monotonic()
    with pytest.raises(OutboundError) as exc:
        outbound.post(f"http://drip.example.com:{drip.port}/hook", data=b"{}")
    elapsed = time.monotonic() - started
    # About the deadline: a generous bound, still far below the seconds the drip would take.
    assert len(drip.response) * drip.interval > 5
    assert 0.5 <= elapsed < 2.5, elapsed
    exchange = drip.wait_for_hang_up()
    # The client hung up part-way through the phase being dripped, and never waited for the rest.
    assert not exchange.finished and exchange.hung_up_after is not None
    if phase == "body":
        assert len(drip.head) <= exchange.sent < len(drip.response)
    else:
        assert exchange.sent < len(drip.head)
    assert "Timed out talking to drip.example.com: no complete answer within 0.6 seconds" in str(exc.value)
    assert isinstance(exc.value, OutboundTimeout)


def test_an_answer_inside_the_deadline_still_arrives_whole(drip) -> None:
    drip.interval = 0.0005
    drip.drip_headers()
    response = outbound.post(f"http://drip.example.com:{drip.port}/hook", data=b"{}")
    assert response.status == 200 and response.json()["ok"] is True
