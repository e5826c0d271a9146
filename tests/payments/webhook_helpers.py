"""Fixtures for outgoing merchant webhooks: a merchant's receiver on 127.0.0.1 and made-up DNS.

The receiver is reached through ``security.outbound`` under its explicit, test-only loopback
allowance (``OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS``), by a name that the fake DNS answers.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

import pytest

from payments import tasks
from payments.merchant_webhooks import IssuedEndpoint, webhook_endpoint_create
from tests.fakes.merchant_receiver import MerchantReceiver

_real_getaddrinfo = socket.getaddrinfo


class FakeDNS:
    """Answers for made-up names (change ``answers`` to rebind); IP literals resolve as usual."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def __call__(self, host, port, *args, **kwargs):  # noqa: ANN001, ANN204 - socket.getaddrinfo's signature
        name = host.decode() if isinstance(host, bytes) else host
        if name in self.answers:
            address = self.answers[name]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port or 0, 0, 0) if family == socket.AF_INET6 else (address, port or 0)
            return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]
        try:
            ipaddress.ip_address(name)
        except ValueError:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return _real_getaddrinfo(host, port, *args, **kwargs)


@pytest.fixture
def dns(monkeypatch) -> FakeDNS:
    fake = FakeDNS(
        {
            "hooks.example.com": "127.0.0.1",
            "public.example.com": "93.184.216.34",
            "internal.example.com": "10.1.2.3",
            "metadata.example.com": "169.254.169.254",
        }
    )
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture(scope="session")
def receiver_server() -> Iterator[MerchantReceiver]:
    server = MerchantReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def receiver(receiver_server: MerchantReceiver, dns: FakeDNS, settings) -> MerchantReceiver:
    settings.OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS = True
    receiver_server.reset()
    return receiver_server


@pytest.fixture
def scheduled(monkeypatch) -> list[float]:
    """Countdowns handed to the broker for retries (recorded instead of queued)."""
    countdowns: list[float] = []

    def record(args=None, kwargs=None, countdown=None, **options):  # noqa: ANN001, ANN202
        countdowns.append(countdown)

    monkeypatch.setattr(tasks.deliver_merchant_webhook, "apply_async", record)
    return countdowns


def receiver_url(receiver: MerchantReceiver, path: str = "/hooks/fintech") -> str:
    return f"http://hooks.example.com:{receiver.port}{path}"


def register(tenant, receiver: MerchantReceiver, **kwargs) -> IssuedEndpoint:
    return webhook_endpoint_create(
        actor=tenant.owner, merchant=tenant.merchant, url=receiver_url(receiver), **kwargs
    )
