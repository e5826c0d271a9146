"""Shared fixtures: every test has an owner, a teammate and an outsider merchant.

``login_verified(client, user)`` gives a client a session that passed both
factors, the way the real sign-in does (django-otp's session key plus the time
of the last code), so tests exercise the same middleware as a browser.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP

from accounts.models import EncryptedTOTPDevice, Membership, Merchant, Role, User
from accounts.otp import OTP_VERIFIED_AT

PASSWORD = "correct-horse-battery-staple-42"


# --- The network is blocked in tests, except loopback ---------------------------------

_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> object:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("/"):
        raise RuntimeError(f"tests must not reach the network (tried {address!r})")
    return _real_connect(self, address)


@pytest.fixture(autouse=True, scope="session")
def _block_network() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Each test starts with an empty cache: rate-limit budgets (the checkout pages', keyed by
    the test client's one address) never carry over from one test to the next."""
    from django.core.cache import cache

    cache.clear()
    yield


# --- People and merchants ------------------------------------------------------------------


def totp_code(device: EncryptedTOTPDevice, at: float | None = None) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = at if at is not None else time.time()
    return f"{totp.token():0{device.digits}d}"


def make_user(email: str, *, with_totp: bool = True, **extra: object) -> User:
    user = User.objects.create_user(email=email, password=PASSWORD, **extra)
    if with_totp:
        EncryptedTOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    return user


@dataclass
class Tenant:
    merchant: Merchant
    owner: User
    teammate: User


def make_tenant(slug: str) -> Tenant:
    merchant = Merchant.objects.create(
        display_name=f"{slug.title()} Shop",
        legal_name=f"{slug.title()} Shop Ltd",
        country="GB",
        data_region=Merchant.Region.EU,
        status=Merchant.Status.ACTIVE,
    )
    owner = make_user(f"owner@{slug}.example.com", full_name=f"{slug.title()} Owner")
    teammate = make_user(f"analyst@{slug}.example.com", full_name=f"{slug.title()} Analyst")
    Membership.objects.create(user=owner, merchant=merchant, role=Role.OWNER)
    Membership.objects.create(user=teammate, merchant=merchant, role=Role.ANALYST)
    return Tenant(merchant=merchant, owner=owner, teammate=teammate)


@pytest.fixture
def tenant(db: None) -> Tenant:
    return make_tenant("alpha")


@pytest.fixture
def outsider(db: None) -> Tenant:
    return make_tenant("omega")


@pytest.fixture
def owner(tenant: Tenant) -> User:
    return tenant.owner


@pytest.fixture
def teammate(tenant: Tenant) -> User:
    return tenant.teammate


def login_verified(client: Client, user: User) -> Client:
    client.force_login(user, backend="allauth.account.auth_backends.AuthenticationBackend")
    device = EncryptedTOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = EncryptedTOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session[OTP_VERIFIED_AT] = int(time.time())
    session.save()
    return client


@pytest.fixture
def verified_client(db: None) -> Callable[[User], Client]:
    def make(user: User) -> Client:
        return login_verified(Client(), user)

    return make


@pytest.fixture
def password_only_client(db: None) -> Callable[[User], Client]:
    def make(user: User) -> Client:
        client = Client()
        client.force_login(user, backend="allauth.account.auth_backends.AuthenticationBackend")
        return client

    return make
