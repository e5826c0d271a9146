"""The review queue: payments held or flagged by fraud rules, captured, canceled, kept or refunded."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.otp import OTP_VERIFIED_AT
from payments.models import Payment, Refund, SimulatedIntent
from security import crypto
from security.models import AuditEvent
from tests.payments.fraud_helpers import add_rule, commit_data_keys, pay_from
from tests.payments.helpers import latest_payment, new_session

pytestmark = pytest.mark.django_db

QUEUE = "/payments/review/"


def held_payment(tenant, email: str = "buyer@example.com", amount: int = 9000) -> Payment:
    """A payment our rules held: authorised with manual capture, waiting in the queue."""
    if not tenant.merchant.fraud_rules.filter(kind="max_amount").exists():
        add_rule(tenant, "max_amount", "review", label="Large order", currency="EUR", amount=5000)
    session = new_session(tenant, amount=amount, email=email)
    pay_from(Client(), session)
    payment = latest_payment(session)
    assert payment.status == Payment.Status.REQUIRES_CAPTURE and payment.review_status == "pending"
    return payment


def flagged_payment(tenant) -> Payment:
    """A payment that succeeded before a rule flagged it."""
    if not tenant.merchant.fraud_rules.filter(kind="risk_level").exists():
        add_rule(tenant, "risk_level", "review", label="Radar elevated", min_level="elevated")
    session = new_session(tenant)
    pay_from(Client(), session, "pm_card_riskLevelElevated")
    payment = latest_payment(session)
    assert payment.status == Payment.Status.SUCCEEDED and payment.review_status == "pending"
    return payment


def decide(client: Client, payment: Payment, decision: str, reason: str = "Spoke to the customer"):
    return client.post(f"/payments/{payment.public_id}/review/", {"decision": decision, "reason": reason})


def test_the_queue_lists_waiting_payments_oldest_first_with_customers_masked(verified_client, tenant):
    first = held_payment(tenant, email="alice@example.com")
    second = flagged_payment(tenant)
    page = verified_client(tenant.owner).get(QUEUE)
    html = page.content.decode()
    assert page.status_code == 200
    assert html.index(first.public_id) < html.index(second.public_id)
    assert "a•••@example.com" in html and "alice@example.com" not in html
    assert "Large order" in html and "Radar elevated" in html and "90.00 EUR" in html
    assert f'href="/payments/{first.public_id}/"' in html
    assert "minute" in html  # how long it has waited


def test_capturing_a_held_payment_takes_the_money_and_empties_the_queue(verified_client, tenant):
    payment = held_payment(tenant)
    client = verified_client(tenant.owner)
    response = decide(client, payment, "capture")
    assert response.status_code == 302
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED and payment.amount_captured == 9000
    assert payment.review_status == "approved"
    assert SimulatedIntent.objects.get(intent_id=payment.gateway_payment_id).status == "succeeded"
    assert AuditEvent.objects.filter(action="payment.review_approved", target_id=payment.public_id).exists()
    assert "Nothing waiting for review" in client.get(QUEUE).content.decode()


def test_canceling_a_held_payment_releases_the_authorisation(verified_client, tenant):
    payment = held_payment(tenant)
    decide(verified_client(tenant.owner), payment, "cancel", "Stolen card")
    payment.refresh_from_db()
    assert payment.status == Payment.Status.CANCELED and payment.amount_captured == 0
    assert payment.review_status == "rejected"
    assert payment.events.filter(kind="review", message__contains="Stolen card").exists()
    assert AuditEvent.objects.filter(action="payment.review_rejected", target_id=payment.public_id).exists()


def test_a_flagged_payment_that_already_succeeded_is_kept_or_refunded(verified_client, tenant):
    client = verified_client(tenant.owner)
    kept = flagged_payment(tenant)
    page = client.get(f"/payments/{kept.public_id}/").content.decode()
    assert 'value="keep"' in page and 'value="refund"' in page and 'value="capture"' not in page
    decide(client, kept, "keep", "Regular customer")
    kept.refresh_from_db()
    assert kept.review_status == "approved" and kept.status == Payment.Status.SUCCEEDED
    assert not Refund.objects.filter(payment=kept).exists()

    refunded = flagged_payment(tenant)
    decide(client, refunded, "refund", "Looks like card testing")
    refunded.refresh_from_db()
    assert refunded.review_status == "rejected"
    refund = Refund.objects.get(payment=refunded)
    assert refund.amount == refunded.amount_captured and "Looks like card testing" in refund.reason


@pytest.mark.parametrize(
    ("decision", "reason", "message"),
    [
        ("capture", "", "Give a reason for the decision."),
        ("capture", "x" * 301, "Keep the reason under 300 characters."),
        ("", "Fine", "Choose what to do with the payment."),
        ("approve-everything", "Fine", "Choose what to do with the payment."),
        ("refund", "Fine", "look at it again before deciding"),  # the page was for a succeeded payment
    ],
)
def test_a_bad_or_stale_decision_changes_nothing(verified_client, tenant, decision, reason, message):
    payment = held_payment(tenant)
    client = verified_client(tenant.owner)
    response = decide(client, payment, decision, reason)
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert message in page.replace("&#x27;", "'")
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REQUIRES_CAPTURE and payment.review_status == "pending"


def test_a_decision_needs_a_fresh_second_factor(verified_client, tenant):
    payment = held_payment(tenant)
    client = verified_client(tenant.owner)
    session = client.session
    session[OTP_VERIFIED_AT] = int(time.time()) - 3600
    session.save()
    response = decide(client, payment, "capture")
    assert response.status_code == 302 and response["Location"].startswith(reverse("two_factor_step_up"))
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REQUIRES_CAPTURE


def test_analysts_see_neither_the_queue_nor_the_decision(verified_client, tenant):
    payment = held_payment(tenant)
    analyst = verified_client(tenant.teammate)
    assert analyst.get(QUEUE).status_code == 403
    assert decide(analyst, payment, "capture").status_code == 403
    assert 'value="capture"' not in analyst.get(f"/payments/{payment.public_id}/").content.decode()
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REQUIRES_CAPTURE


def test_another_merchant_sees_none_of_the_queue_and_cannot_decide(verified_client, tenant, outsider):
    payment = held_payment(tenant)
    client = verified_client(outsider.owner)
    assert payment.public_id not in client.get(QUEUE).content.decode()
    assert decide(client, payment, "cancel").status_code == 404
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REQUIRES_CAPTURE


def test_the_queue_makes_the_same_number_of_queries_however_long_it_is(
    verified_client, tenant, django_capture_on_commit_callbacks
):
    client = verified_client(tenant.owner)
    with django_capture_on_commit_callbacks() as callbacks:
        held_payment(tenant, email="first@example.com")
    commit_data_keys(callbacks)
    client.get(QUEUE)

    def count() -> int:
        crypto.clear_key_cache()  # cold: the page loads its customers' keys in one query
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(QUEUE).status_code == 200
        return len(ctx.captured_queries)

    small = count()
    with django_capture_on_commit_callbacks() as callbacks:
        for i in range(8):
            held_payment(tenant, email=f"customer{i}@example.com")
            flagged_payment(tenant)
    commit_data_keys(callbacks)
    assert count() == small
