"""A customer pays a merchant's link on the simulated gateway in Chromium; the merchant sees the result.

The simulated gateway's webhooks are delivered by the Celery task (eager in tests) over HTTP
to ``SITE_URL``, which is the live server here: the production path, end to end.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from payments.models import Payment, WebhookEvent
from tests.conftest import make_tenant
from tests.e2e.conftest import sign_in
from tests.payments.helpers import latest_payment, new_session
from tests.payments.matrix_helpers import webhooks_received

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

THREE_DS = "3D Secure required: you approve or fail the challenge"


@pytest.fixture
def simulated_shop(settings, live_server):  # noqa: ANN201
    settings.SITE_URL = live_server.url  # the simulated gateway's webhooks come back to this server
    settings.STRIPE_SECRET_KEY = settings.STRIPE_PUBLISHABLE_KEY = ""
    settings.BRAINTREE_MERCHANT_ID = ""
    return make_tenant("lumen")


def test_customer_passes_3d_secure_and_the_merchant_sees_the_payment_succeeded(
    live_server, page: Page, shot, simulated_shop
) -> None:
    base = live_server.url
    session = new_session(simulated_shop, amount=4990, currency="EUR")

    page.goto(f"{base}/pay/{session.public_id}/")
    expect(page.get_by_test_id("test-mode")).to_contain_text("TEST MODE")
    expect(page.get_by_test_id("checkout-amount")).to_have_text("49.90 EUR")
    page.get_by_label(THREE_DS).check()
    shot("checkout-test-cards")
    page.get_by_role("button", name="Pay 49.90 EUR").click()

    expect(page.get_by_role("heading", name="Confirm your payment")).to_be_visible()
    expect(page.get_by_text("Simulated 3D Secure")).to_be_visible()
    shot("checkout-3ds-challenge")
    page.get_by_role("button", name="Approve").click()

    expect(page.get_by_test_id("checkout-result")).to_have_text("Payment successful")
    payment = latest_payment(session)
    # The reference the customer keeps is the link's: the page prints no payment id.
    expect(page.get_by_test_id("checkout-reference")).to_have_text(session.public_id)
    assert payment.public_id not in page.content()
    shot("checkout-success")

    # The gateway's webhooks arrived through Celery and were applied.
    assert webhooks_received() == [
        ("payment_intent.requires_action", WebhookEvent.Status.APPLIED),
        ("payment_intent.succeeded", WebhookEvent.Status.APPLIED),
    ]
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED and payment.three_d_secure == "authenticated"

    # The merchant signs in and opens the payment.
    sign_in(page, base, simulated_shop.owner)
    page.goto(f"{base}/payments/{payment.public_id}/")
    expect(page.get_by_test_id("payment-status")).to_have_text("Succeeded")
    expect(page.get_by_test_id("timeline")).to_contain_text("requires_action → succeeded")
    shot("merchant-payment-succeeded")


def test_a_declined_card_and_a_failed_challenge_tell_the_customer_what_to_do(
    live_server, page: Page, shot, simulated_shop
) -> None:
    base = live_server.url
    session = new_session(simulated_shop, amount=1250, currency="GBP")

    page.goto(f"{base}/pay/{session.public_id}/")
    page.get_by_label("Declined: insufficient funds").check()
    page.get_by_role("button", name="Pay 12.50 GBP").click()
    error = page.get_by_test_id("checkout-error")
    expect(error).to_contain_text("Your card has insufficient funds.")
    expect(error).to_contain_text("Pay with another card, or contact Lumen Shop if this keeps happening.")
    expect(page.get_by_test_id("checkout-amount")).to_have_text("12.50 GBP")
    shot("checkout-declined-insufficient-funds")

    page.get_by_label(THREE_DS).check()
    page.get_by_role("button", name="Pay 12.50 GBP").click()
    shot("checkout-3ds-challenge-before-failing")
    page.get_by_role("button", name="Fail authentication").click()
    expect(page.get_by_test_id("checkout-error")).to_contain_text(
        "We could not verify your card with your bank. Try again or use another card."
    )
    shot("checkout-3ds-failed")

    payment = latest_payment(session)
    assert (payment.status, payment.decline_code) == ("failed", "authentication_failed")

    # Another card on the same link works.
    page.get_by_label("Visa: succeeds").check()
    page.get_by_role("button", name="Pay 12.50 GBP").click()
    expect(page.get_by_test_id("checkout-result")).to_have_text("Payment successful")
    payment.refresh_from_db()
    assert (payment.status, payment.attempts, payment.decline_code) == ("succeeded", 3, "")
