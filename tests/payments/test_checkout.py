"""Checkout on the simulated gateway: the production code path, no network."""

from __future__ import annotations

import pytest
from django.urls import reverse

from payments.models import CheckoutSession, Payment, PaymentEvent
from tests.payments.helpers import latest_payment, new_session, pay

pytestmark = pytest.mark.django_db


def test_checkout_page_shows_the_amount_and_a_labelled_test_mode(client, tenant):
    session = new_session(tenant, amount=4990, currency="EUR")
    page = client.get(f"/pay/{session.public_id}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "49.90 EUR" in html and "TEST MODE" in html and "pm_card_visa" in html


def test_successful_payment_completes_the_session(client, tenant):
    session = new_session(tenant)
    response = pay(client, session, "pm_card_visa")
    assert response.status_code == 302 and response["Location"] == reverse(
        "checkout_done", args=[session.public_id]
    )
    payment = latest_payment(session)
    assert payment.status == Payment.Status.SUCCEEDED
    assert payment.amount_captured == 4990 and payment.card_last4 == "4242"
    session.refresh_from_db()
    assert session.status == CheckoutSession.Status.COMPLETE
    done = client.get(response["Location"]).content.decode()
    assert "Payment successful" in done and session.public_id in done
    assert payment.public_id not in done  # the result page prints no id that grants anything


def test_browser_cannot_change_the_amount_or_currency(client, tenant):
    session = new_session(tenant, amount=1000, currency="EUR")
    pay(client, session, "pm_card_visa", amount="1", currency="JPY", amount_minor="1")
    payment = latest_payment(session)
    assert (payment.amount, payment.currency, payment.amount_captured) == (1000, "EUR", 1000)


@pytest.mark.parametrize(
    ("method", "code", "message"),
    [
        ("pm_card_chargeDeclined", "generic_decline", "declined"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds", "insufficient funds"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired"),
        ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "security code"),
    ],
)
def test_declined_card_shows_a_helpful_message_and_can_retry(client, tenant, method, code, message):
    session = new_session(tenant)
    response = pay(client, session, method)
    assert response.status_code == 400
    assert message in response.content.decode().lower()
    payment = latest_payment(session)
    assert payment.status == Payment.Status.FAILED and payment.decline_code == code
    # The customer tries another card on the same link.
    pay(client, session, "pm_card_visa")
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED


def test_three_d_secure_challenge_then_success(client, tenant):
    session = new_session(tenant)
    response = pay(client, session, "pm_card_threeDSecure2Required")
    payment = latest_payment(session)
    assert payment.status == Payment.Status.REQUIRES_ACTION
    assert response["Location"] == reverse("checkout_simulated_3ds", args=[payment.gateway_payment_id])
    assert b"Approve" in client.get(response["Location"]).content
    done = client.post(response["Location"], {"decision": "approve"})
    assert done["Location"] == reverse("checkout_done", args=[session.public_id])
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED and payment.three_d_secure == "authenticated"


def test_three_d_secure_challenge_then_failure(client, tenant):
    session = new_session(tenant)
    response = pay(client, session, "pm_card_threeDSecure2Required")
    back = client.post(response["Location"], {"decision": "fail"})
    assert back["Location"] == reverse("checkout_pay", args=[session.public_id])
    payment = latest_payment(session)
    assert payment.status == Payment.Status.FAILED
    assert "could not verify your card" in client.get(back["Location"]).content.decode()


def test_radar_highest_risk_is_blocked_with_its_outcome_stored(client, tenant):
    session = new_session(tenant)
    response = pay(client, session, "pm_card_radarBlock")
    payment = latest_payment(session)
    assert payment.status == Payment.Status.FAILED
    # The customer is told the card was declined, on the same page, so they can try another card.
    assert response.status_code == 400 and "Your card was declined." in response.content.decode()
    assert payment.risk_level == "highest" and payment.risk_type == "blocked"


def test_expired_link_refuses_payment_and_changes_nothing(client, tenant):
    from datetime import timedelta

    from django.utils import timezone

    session = new_session(tenant)
    CheckoutSession.objects.filter(pk=session.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = pay(client, session, "pm_card_visa")
    assert response.status_code == 410 and b"expired" in response.content
    assert not Payment.objects.filter(checkout_session=session, status=Payment.Status.SUCCEEDED).exists()


def test_paid_link_cannot_be_paid_twice(client, tenant):
    session = new_session(tenant)
    pay(client, session, "pm_card_visa")
    again = pay(client, session, "pm_card_visa")
    assert Payment.objects.filter(checkout_session=session).count() == 1
    # The customer lands on the receipt of the payment already made, charged once.
    assert again.status_code == 302 and again["Location"] == reverse(
        "checkout_done", args=[session.public_id]
    )
    payment = latest_payment(session)
    assert payment.amount_captured == session.amount
    receipt = client.get(again["Location"]).content.decode()
    assert "Payment successful" in receipt and "49.90" in receipt and session.public_id in receipt


def test_unknown_link_is_404(client):
    assert client.get("/pay/cs_doesnotexist/").status_code == 404


def test_history_records_each_state_change(client, tenant):
    session = new_session(tenant)
    pay(client, session, "pm_card_visa")
    payment = latest_payment(session)
    kinds = list(PaymentEvent.objects.filter(payment=payment).values_list("kind", "to_status"))
    assert ("created", "requires_payment_method") in kinds and ("status", "succeeded") in kinds


def test_onboarding_merchants_only_get_test_mode(tenant):
    from accounts.models import Merchant

    Merchant.objects.filter(pk=tenant.merchant.pk).update(status=Merchant.Status.ONBOARDING)
    tenant.merchant.refresh_from_db()
    session = new_session(tenant)
    assert session.mode == "test"
    from django.test import Client

    assert "TEST MODE" in Client().get(f"/pay/{session.public_id}/").content.decode()


def test_bad_amounts_and_emails_are_refused(tenant):
    from payments import services
    from security.errors import ApplicationError

    for bad in ({"amount": 0}, {"amount": -5}, {"currency": "XXX"}, {"customer_email": "not-an-email"}):
        kwargs = {"amount": 100, "currency": "EUR", "customer_email": "", **bad}
        with pytest.raises(ApplicationError):
            services.checkout_session_create(actor=tenant.owner, merchant=tenant.merchant, **kwargs)
    assert not CheckoutSession.objects.exists()
