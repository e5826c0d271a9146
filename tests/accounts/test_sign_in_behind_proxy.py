"""Sign-in behind the reverse proxy: lockouts and rate limits are per real client.

Every request comes from the proxy's address; only ``X-Forwarded-For`` tells people apart.
"""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from tests.conftest import PASSWORD, make_user
from tests.security.proxy_helpers import PROXY, via_proxy

pytestmark = pytest.mark.django_db

ATTACKER = "198.51.100.23"
VICTIM = "203.0.113.40"


@pytest.fixture(autouse=True)
def behind_one_proxy(settings):
    settings.TRUSTED_PROXY_COUNT = 1  # the one setting an operator sets; allauth follows it
    cache.clear()  # allauth's rate-limit counters live in the cache (Redis outlives a test)


def sign_in(email: str, password: str, address: str, *, forged: str | None = "192.0.2.66"):
    return Client().post(
        reverse("account_login"), {"login": email, "password": password}, **via_proxy(address, forged=forged)
    )


def test_an_attacker_elsewhere_cannot_lock_a_person_out_of_their_own_address(owner, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(owner.email, "wrong-password-guess", ATTACKER)
    assert sign_in(owner.email, PASSWORD, ATTACKER).status_code == 429  # the attacker is locked out
    # The person signs in from home, through the same proxy, undisturbed.
    assert sign_in(owner.email, PASSWORD, VICTIM).status_code == 302
    # The lock is on the account and the attacker's address: not the proxy, not what they wrote.
    locked = AccessAttempt.objects.get(username=owner.email)
    assert locked.ip_address == ATTACKER and locked.failures_since_start >= settings.AXES_FAILURE_LIMIT
    assert not AccessAttempt.objects.filter(ip_address__in=[PROXY, "192.0.2.66"]).exists()


def test_rewriting_the_forwarded_header_does_not_escape_a_lockout(owner, settings):
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        sign_in(owner.email, "wrong-password-guess", ATTACKER, forged=f"192.0.2.{attempt}")
    assert sign_in(owner.email, PASSWORD, ATTACKER, forged="192.0.2.200").status_code == 429
    assert sign_in(owner.email, PASSWORD, ATTACKER, forged=None).status_code == 429


def test_sign_in_rate_limit_counts_each_real_client_apart(settings):
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "login_failed": "3/m/ip"}
    person = make_user("person@example.com")
    for n in range(3):  # different accounts each time, so only the per-address limit counts
        sign_in(f"guess{n}@example.com", "wrong-password-guess", ATTACKER, forged=f"192.0.2.{n}")
    limited = sign_in("guess9@example.com", "wrong-password-guess", ATTACKER, forged="192.0.2.99")
    assert "Too many failed login attempts" in limited.content.decode()
    # Another customer behind the same proxy is not caught by the attacker's limit.
    assert sign_in(person.email, PASSWORD, VICTIM).status_code == 302


def test_without_a_trusted_proxy_the_forwarded_header_is_ignored(owner, settings):
    settings.TRUSTED_PROXY_COUNT = 0
    Client().post(
        reverse("account_login"),
        {"login": owner.email, "password": "wrong-password-guess"},
        REMOTE_ADDR="203.0.113.77",
        HTTP_X_FORWARDED_FOR="198.51.100.1, 198.51.100.2",
    )
    assert AccessAttempt.objects.get(username=owner.email).ip_address == "203.0.113.77"
