"""One reading of the client's address, behind the proxy, for every consumer.

With ``TRUSTED_PROXY_COUNT=1`` (deploy/compose.yaml) each request comes from the proxy and the
client is the right-most ``X-Forwarded-For`` entry; the left-most is whatever the client wrote.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse

from accounts.api_keys import api_key_create
from payments.models import Payment
from security.client_ip import client_ip
from security.models import AuditEvent
from tests.payments.fraud_helpers import add_rule
from tests.payments.helpers import latest_payment, new_session
from tests.platform.helpers import clean_env, manage
from tests.security.proxy_helpers import FORGED, PROXY, via_proxy

CUSTOMER = "203.0.113.9"


@pytest.fixture
def behind_one_proxy(settings):
    settings.TRUSTED_PROXY_COUNT = 1


def address(meta: dict[str, str]) -> str | None:
    return client_ip(RequestFactory().get("/", **meta))


# --- The rule -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proxies", "remote", "forwarded", "expected"),
    [
        # No trusted proxy: X-Forwarded-For is ignored entirely.
        (0, "203.0.113.9", "198.51.100.1", "203.0.113.9"),
        (0, "203.0.113.9", None, "203.0.113.9"),
        # One proxy: the right-most entry, whatever the client put before it.
        (1, PROXY, "203.0.113.9", "203.0.113.9"),
        (1, PROXY, f"{FORGED}, 203.0.113.9", "203.0.113.9"),
        (1, PROXY, f"{FORGED},203.0.113.9 ", "203.0.113.9"),
        (1, PROXY, "not-an-address, 203.0.113.9", "203.0.113.9"),  # the client's part is never read
        (1, PROXY, "2001:DB8:0::1", "2001:db8::1"),
        (1, PROXY, "::ffff:203.0.113.9", "203.0.113.9"),
        (1, PROXY, "203.0.113.9:51234", "203.0.113.9"),
        (1, PROXY, "[2001:db8::1]:443", "2001:db8::1"),
        # Two proxies: the second entry from the right; the right-most is the outer proxy.
        (2, PROXY, f"{FORGED}, 203.0.113.9, 10.0.0.2", "203.0.113.9"),
        # Not what our proxies would send: nothing in the header is trusted.
        (1, PROXY, None, PROXY),
        (1, PROXY, "", PROXY),
        (1, PROXY, f"{FORGED}, garbage", PROXY),
        (2, PROXY, "203.0.113.9", PROXY),  # fewer hops than proxies
        (2, PROXY, "203.0.113.9, garbage", PROXY),
        (0, "not-an-address", None, None),
    ],
)
def test_the_client_is_the_right_most_untrusted_hop(settings, proxies, remote, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    meta = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    assert address(meta) == expected


def test_one_setting_tells_every_library_how_many_proxies_to_trust(tmp_path):
    probe = (
        "from django.conf import settings as s; "
        "print(s.TRUSTED_PROXY_COUNT, s.ALLAUTH_TRUSTED_PROXY_COUNT, s.REST_FRAMEWORK['NUM_PROXIES'], "
        "s.AXES_CLIENT_IP_CALLABLE, s.ACCOUNT_ADAPTER)"
    )
    base = {
        "DEBUG": "1",
        "CACHE_URL": "locmemcache://",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'p.sqlite3'}",
    }
    result = manage("shell", "--no-imports", "-c", probe, env=clean_env(**base, TRUSTED_PROXY_COUNT="2"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-5:] == [
        "2",
        "2",
        "2",
        "security.client_ip.client_ip",
        "accounts.adapters.AccountAdapter",  # whose get_client_ip is ours
    ]
    wrong = manage("check", env=clean_env(**base, TRUSTED_PROXY_COUNT="-1"))
    assert wrong.returncode != 0 and "TRUSTED_PROXY_COUNT must be 0" in wrong.stderr


ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("accounts", "compliance", "fintech_portal", "kyc", "payments", "security", "banking")
# Reading the address: the META keys, the header by name, DRF's reader (its own X-Forwarded-For rule).
READS = re.compile(r"REMOTE_ADDR|HTTP_X_FORWARDED_FOR|[\"']x-forwarded-for[\"']|\.get_ident\(", re.I)


def test_no_other_code_reads_the_client_address_headers():
    """A second reader would disagree with this one (as axes' and allauth's own readers did)."""
    readers = {
        str(path.relative_to(ROOT))
        for folder in SOURCE_DIRS
        for path in (ROOT / folder).rglob("*.py")
        if READS.search(path.read_text())
    }
    assert readers == {"security/client_ip.py"}


# --- Every consumer sees the real client ----------------------------------------------------------


@pytest.mark.django_db
def test_audit_events_record_the_real_client_not_the_proxy_nor_the_forged_entry(behind_one_proxy):
    Client().post(
        reverse("account_login"),
        {"login": "nobody@example.com", "password": "wrong-password-guess"},
        **via_proxy(CUSTOMER),
    )
    assert AuditEvent.objects.get(action="auth.sign_in_failed").ip == CUSTOMER


@pytest.mark.django_db
def test_without_a_trusted_proxy_audit_events_ignore_the_forwarded_header(settings):
    settings.TRUSTED_PROXY_COUNT = 0
    Client().post(
        reverse("account_login"),
        {"login": "nobody@example.com", "password": "wrong-password-guess"},
        REMOTE_ADDR="203.0.113.77",
        HTTP_X_FORWARDED_FOR=f"{FORGED}, {CUSTOMER}",
    )
    assert AuditEvent.objects.get(action="auth.sign_in_failed").ip == "203.0.113.77"


def pay(session, customer: str, *, forged: str | None = FORGED, **headers: str):
    return Client().post(
        f"/pay/{session.public_id}/",
        {"payment_method": "pm_card_visa"},
        **via_proxy(customer, forged=forged),
        **headers,
    )


@pytest.mark.django_db
def test_fraud_rules_see_the_real_client(behind_one_proxy, tenant):
    add_rule(tenant, "block_ip", "block", entries=[f"{CUSTOMER}/32"])
    blocked = new_session(tenant)
    assert pay(blocked, CUSTOMER).status_code == 402
    payment = latest_payment(blocked)
    assert payment.decline_code == "merchant_blocked" and payment.customer_ip == CUSTOMER
    # Another customer behind the same proxy is not caught by the rule; writing the blocked
    # address at the left of X-Forwarded-For does not get them blocked either.
    other = new_session(tenant)
    pay(other, "198.51.100.7", forged=CUSTOMER)
    payment = latest_payment(other)
    assert payment.status == Payment.Status.SUCCEEDED and payment.customer_ip == "198.51.100.7"


@pytest.mark.django_db
def test_an_api_keys_last_use_is_the_real_clients_address(behind_one_proxy, tenant):
    issued = api_key_create(actor=tenant.owner, merchant=tenant.merchant, name="ci", scope="read")
    response = Client().get(
        reverse("api_me"), HTTP_AUTHORIZATION=f"Bearer {issued.secret}", **via_proxy(CUSTOMER)
    )
    assert response.status_code == 200
    issued.key.refresh_from_db()
    assert issued.key.last_used_ip == CUSTOMER


# --- The IP country header (8c) -------------------------------------------------------------------


@pytest.mark.django_db
def test_a_forged_cf_ipcountry_changes_nothing_the_rules_see_by_default(tenant):
    add_rule(tenant, "country_mismatch", "block")  # simulated cards are issued in the US
    session = new_session(tenant)
    Client().post(
        f"/pay/{session.public_id}/",
        {"payment_method": "pm_card_visa"},
        REMOTE_ADDR=CUSTOMER,
        HTTP_CF_IPCOUNTRY="GB",
    )
    payment = latest_payment(session)
    assert payment.ip_country == ""
    assert payment.fraud_rules_fired == [] and payment.status == Payment.Status.SUCCEEDED


@pytest.mark.django_db
def test_operators_behind_cloudflare_name_its_country_header(tenant, settings):
    settings.PAYMENTS_IP_COUNTRY_HEADER = "CF-IPCountry"
    session = new_session(tenant)
    Client().post(
        f"/pay/{session.public_id}/",
        {"payment_method": "pm_card_visa"},
        REMOTE_ADDR=CUSTOMER,
        HTTP_CF_IPCOUNTRY="gb",
    )
    assert latest_payment(session).ip_country == "GB"
