"""Fraud rules end to end through the checkout pages: before the card, and on the gateway's result.

Each kind is shown allowing, holding for review and blocking a payment on the
simulated gateway; a few cases go through the Stripe fake (the real SDK).
"""

from __future__ import annotations

import html
from typing import Any

import pytest

from payments.gateways import registry
from payments.models import Payment, PaymentEvent, PaymentSettings, SimulatedIntent
from security.models import AuditEvent
from tests.payments.conftest import STRIPE_PUBLISHABLE_KEY, STRIPE_SECRET_KEY
from tests.payments.fraud_helpers import CUSTOMER_IP, add_rule, pay_from, run_fraud_cancels
from tests.payments.helpers import latest_payment, new_session

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def behind_cloudflare(settings):
    """These payments arrive as behind Cloudflare, whose header the operator named as trusted.

    By default no country header is trusted (tests/security/test_client_ip.py).
    """
    settings.PAYMENTS_IP_COUNTRY_HEADER = "CF-IPCountry"


# --- Rules judged when checkout opens ------------------------------------------------------------

KIND = {
    "max_amount": "max_amount",
    "velocity_email_count": "velocity",
    "velocity_ip_sum": "velocity",
    "block_email": "block_email",
    "block_ip": "block_ip",
}


def before_case(case: str, tenant, client, *, fires: bool) -> tuple[dict[str, Any], Any, str]:
    """(the rule's parameters, the checkout session to pay, the customer's IP)."""
    if case == "max_amount":
        session = new_session(tenant, amount=6000 if fires else 4000)
        return {"currency": "EUR", "amount": 5000}, session, CUSTOMER_IP
    if case == "velocity_email_count":
        pay_from(client, new_session(tenant, email="buyer@example.com"))
        email = "buyer@example.com" if fires else "someone.else@example.com"
        params = {"dimension": "email", "measure": "count", "limit": 1, "window_minutes": 60}
        return params, new_session(tenant, email=email), CUSTOMER_IP
    if case == "velocity_ip_sum":
        pay_from(client, new_session(tenant, email="first@example.com"), ip="198.51.100.20")
        params = {"dimension": "ip", "measure": "sum", "currency": "EUR", "limit": 8000, "window_minutes": 60}
        ip = "198.51.100.20" if fires else "198.51.100.21"
        return params, new_session(tenant, email="second@example.com"), ip
    if case == "block_email":
        email = "buyer@example.com" if fires else "other@example.com"
        return {"entries": ["  Buyer@Example.COM "]}, new_session(tenant, email=email), CUSTOMER_IP
    if case == "block_ip":
        return {"entries": ["203.0.113.0/24"]}, new_session(tenant), CUSTOMER_IP if fires else "198.51.100.1"
    raise AssertionError(case)


@pytest.mark.parametrize("case", list(KIND))
def test_a_rule_that_does_not_match_lets_the_payment_through(client, tenant, case):
    params, session, ip = before_case(case, tenant, client, fires=False)
    add_rule(tenant, KIND[case], "block", **params)
    pay_from(client, session, ip=ip)
    payment = latest_payment(session)
    assert payment.status == Payment.Status.SUCCEEDED
    assert payment.fraud_outcome == "allow" and payment.fraud_rules_fired == []
    assert payment.review_status == ""


@pytest.mark.parametrize("case", list(KIND))
def test_a_review_rule_holds_the_payment_authorised_in_the_review_queue(
    client, tenant, case, verified_client
):
    params, session, ip = before_case(case, tenant, client, fires=True)
    rule = add_rule(tenant, KIND[case], "review", label="Check by hand", **params)
    response = pay_from(client, session, ip=ip)
    assert response.status_code == 302
    payment = latest_payment(session)
    assert payment.status == Payment.Status.REQUIRES_CAPTURE
    assert payment.capture_method == "manual" and payment.amount_captured == 0
    assert payment.fraud_outcome == "review" and payment.review_status == "pending"
    [fired] = payment.fraud_rules_fired
    assert (fired["rule_id"], fired["kind"], fired["label"], fired["action"], fired["stage"]) == (
        rule.public_id,
        rule.kind,
        "Check by hand",
        "review",
        "before",
    )
    assert fired["detail"]
    page = verified_client(tenant.owner).get(f"/payments/{payment.public_id}/").content.decode()
    assert "Check by hand" in page and html.escape(fired["detail"]) in page and 'value="capture"' in page


@pytest.mark.parametrize("case", list(KIND))
def test_a_block_rule_refuses_the_payment_before_the_gateway_is_asked(client, tenant, case):
    params, session, ip = before_case(case, tenant, client, fires=True)
    add_rule(tenant, KIND[case], "block", **params)
    intents_before = SimulatedIntent.objects.count()
    response = pay_from(client, session, ip=ip)
    assert response.status_code == 402
    assert "This payment was declined. Contact the merchant." in response.content.decode()
    payment = latest_payment(session)
    assert payment.status == Payment.Status.FAILED and payment.decline_code == "merchant_blocked"
    assert payment.fraud_outcome == "block" and payment.fraud_rules_fired[0]["action"] == "block"
    assert payment.gateway_payment_id is None
    assert SimulatedIntent.objects.count() == intents_before
    # Trying again changes nothing.
    assert pay_from(client, session, ip=ip).status_code == 402
    assert session.payments.count() == 1


def test_block_wins_over_review_and_every_fired_rule_is_recorded(client, tenant):
    session = new_session(tenant, amount=9000)
    review = add_rule(tenant, "max_amount", "review", currency="EUR", amount=5000)
    block = add_rule(tenant, "block_email", "block", entries=["buyer@example.com"])
    pay_from(client, session)
    payment = latest_payment(session)
    assert payment.fraud_outcome == "block" and payment.status == Payment.Status.FAILED
    assert {f["rule_id"] for f in payment.fraud_rules_fired} == {review.public_id, block.public_id}
    event = PaymentEvent.objects.get(payment=payment, kind="fraud")
    assert "block" in event.message and set(event.data["rules"]) == {review.public_id, block.public_id}


def test_disabled_rules_and_other_merchants_rules_do_not_fire(client, tenant, outsider):
    from payments import fraud_rules

    rule = add_rule(tenant, "max_amount", "block", currency="EUR", amount=100)
    fraud_rules.fraud_rule_set_enabled(actor=tenant.owner, rule=rule, enabled=False)
    add_rule(outsider, "max_amount", "block", currency="EUR", amount=100)
    session = new_session(tenant)
    pay_from(client, session)
    assert latest_payment(session).status == Payment.Status.SUCCEEDED


def test_velocity_only_counts_payments_inside_the_window(client, tenant):
    from datetime import timedelta

    from django.utils import timezone

    pay_from(client, new_session(tenant))
    Payment.objects.update(created_at=timezone.now() - timedelta(minutes=61))
    add_rule(tenant, "velocity", "block", dimension="email", measure="count", limit=1, window_minutes=60)
    session = new_session(tenant)
    pay_from(client, session)
    assert latest_payment(session).status == Payment.Status.SUCCEEDED


def test_velocity_counts_card_attempts_and_totals_only_money_authorised(client, tenant):
    client.get(f"/pay/{new_session(tenant).public_id}/")  # opened, never paid: not an attempt
    declined = new_session(tenant, email="someone@example.com")
    pay_from(client, declined, "pm_card_chargeDeclined")  # an attempt, but no money
    add_rule(tenant, "velocity", "block", dimension="email", measure="count", limit=1, window_minutes=60)
    add_rule(
        tenant,
        "velocity",
        "block",
        dimension="ip",
        measure="sum",
        currency="EUR",
        limit=6000,
        window_minutes=60,
    )
    session = new_session(tenant)
    pay_from(client, session)
    assert latest_payment(session).status == Payment.Status.SUCCEEDED
    again = new_session(tenant, email="someone@example.com")
    pay_from(client, again)
    payment = latest_payment(again)
    assert payment.status == Payment.Status.FAILED and payment.decline_code == "merchant_blocked"
    assert {f["detail"] for f in payment.fraud_rules_fired} == {
        "2 payments from this customer email in 1 hour (limit 1)",
        "99.80 EUR from this IP address in 1 hour (limit 60.00 EUR)",
    }


def test_the_ip_country_from_the_proxy_header_is_stored_on_the_payment(client, tenant, settings):
    session = new_session(tenant)
    pay_from(client, session, country="gb")
    assert latest_payment(session).ip_country == "GB"
    settings.PAYMENTS_IP_COUNTRY_HEADER = ""  # the default, no trusted proxy: the header is ignored
    other = new_session(tenant)
    pay_from(client, other, country="FR")
    assert latest_payment(other).ip_country == ""


# --- Rules judged on the gateway's result --------------------------------------------------------

AFTER_KIND = {
    "country_mismatch": "country_mismatch",
    "block_card": "block_card",
    "block_bin": "block_bin",
    "risk_level": "risk_level",
    "velocity_card": "velocity",
}


def after_case(case: str, tenant, client, *, fires: bool) -> tuple[dict[str, Any], str, str]:
    """(the rule's parameters, the test card to pay with, the IP's country)."""
    other_card = "pm_card_mastercard"
    if case == "country_mismatch":
        return {}, "pm_card_visa", "GB" if fires else "US"  # simulated cards are issued in the US
    if case == "block_card":
        earlier = new_session(tenant, email="earlier@example.com")
        pay_from(client, earlier, "pm_card_visa")
        fingerprint = latest_payment(earlier).card_fingerprint
        assert fingerprint
        return {"entries": [fingerprint]}, "pm_card_visa" if fires else other_card, "US"
    if case == "block_bin":
        return {"entries": ["424242"]}, "pm_card_visa" if fires else other_card, "US"
    if case == "risk_level":
        return {"min_level": "elevated"}, "pm_card_riskLevelElevated" if fires else "pm_card_visa", "US"
    if case == "velocity_card":
        pay_from(client, new_session(tenant, email="earlier@example.com"), "pm_card_visa")
        params = {"dimension": "card", "measure": "count", "limit": 1, "window_minutes": 60}
        return params, "pm_card_visa" if fires else other_card, "US"
    raise AssertionError(case)


@pytest.mark.parametrize("case", list(AFTER_KIND))
def test_a_card_rule_that_does_not_match_lets_the_payment_through(client, tenant, case):
    params, card, country = after_case(case, tenant, client, fires=False)
    add_rule(tenant, AFTER_KIND[case], "block", **params)
    session = new_session(tenant)
    pay_from(client, session, card, country=country)
    payment = latest_payment(session)
    assert payment.status == Payment.Status.SUCCEEDED
    assert (
        payment.fraud_outcome == "allow" and payment.fraud_rules_fired == [] and payment.review_status == ""
    )


@pytest.mark.parametrize("action", ["review", "block"])
@pytest.mark.parametrize("case", list(AFTER_KIND))
def test_a_card_rule_firing_after_the_payment_succeeded_flags_it_for_review(
    client, tenant, case, action, django_capture_on_commit_callbacks
):
    params, card, country = after_case(case, tenant, client, fires=True)
    rule = add_rule(tenant, AFTER_KIND[case], action, **params)
    session = new_session(tenant)
    with django_capture_on_commit_callbacks() as callbacks:
        pay_from(client, session, card, country=country)
    assert run_fraud_cancels(callbacks) == 0  # nothing to cancel: the money is taken
    payment = latest_payment(session)
    assert payment.status == Payment.Status.SUCCEEDED
    assert payment.review_status == "pending" and payment.fraud_outcome == action
    [fired] = payment.fraud_rules_fired
    assert (fired["rule_id"], fired["stage"], fired["action"]) == (rule.public_id, "after", action)
    fraud_event = PaymentEvent.objects.get(payment=payment, kind="fraud")
    assert "already succeeded" in fraud_event.message
    assert PaymentEvent.objects.filter(payment=payment, kind="review").count() == 1
    assert AuditEvent.objects.filter(action="payment.fraud_rules_fired", target_id=payment.public_id).exists()


@pytest.mark.parametrize("case", list(AFTER_KIND))
def test_a_card_rule_blocking_an_authorised_payment_cancels_it_at_the_gateway(
    client, tenant, case, django_capture_on_commit_callbacks
):
    params, card, country = after_case(case, tenant, client, fires=True)
    add_rule(tenant, "max_amount", "review", currency="EUR", amount=1000)  # holds it: manual capture
    block = add_rule(tenant, AFTER_KIND[case], "block", **params)
    session = new_session(tenant)
    with django_capture_on_commit_callbacks() as callbacks:
        pay_from(client, session, card, country=country)
    payment = latest_payment(session)
    assert payment.status == Payment.Status.REQUIRES_CAPTURE and payment.fraud_outcome == "block"
    assert block.public_id in {f["rule_id"] for f in payment.fraud_rules_fired}
    assert run_fraud_cancels(callbacks) == 1
    payment.refresh_from_db()
    assert payment.status == Payment.Status.CANCELED and payment.amount_captured == 0
    assert payment.review_status == ""  # left the queue
    intent = SimulatedIntent.objects.get(intent_id=payment.gateway_payment_id)
    assert intent.status == "canceled"
    messages = list(PaymentEvent.objects.filter(payment=payment).values_list("kind", "to_status", "source"))
    assert ("status", "canceled", "fraud_rules") in messages
    # Running the task again (a redelivery) does no harm.
    from payments import tasks

    tasks.cancel_blocked_payment.delay(payment.pk)
    assert PaymentEvent.objects.filter(payment=payment, to_status="canceled").count() == 1


@pytest.mark.parametrize("case", list(AFTER_KIND))
def test_a_card_rule_asking_for_review_keeps_an_authorised_payment_in_the_queue(
    client, tenant, case, django_capture_on_commit_callbacks
):
    params, card, country = after_case(case, tenant, client, fires=True)
    add_rule(tenant, "max_amount", "review", currency="EUR", amount=1000)
    add_rule(tenant, AFTER_KIND[case], "review", **params)
    session = new_session(tenant)
    with django_capture_on_commit_callbacks() as callbacks:
        pay_from(client, session, card, country=country)
    assert run_fraud_cancels(callbacks) == 0
    payment = latest_payment(session)
    assert payment.status == Payment.Status.REQUIRES_CAPTURE and payment.review_status == "pending"
    assert [f["stage"] for f in payment.fraud_rules_fired] == ["before", "after"]


def test_a_rule_fires_once_however_often_the_gateway_repeats_itself(client, tenant):
    from payments import services

    add_rule(tenant, "risk_level", "review", min_level="elevated")
    session = new_session(tenant)
    pay_from(client, session, "pm_card_riskLevelElevated")
    payment = latest_payment(session)
    services.payment_refetch(payment=payment)
    services.payment_refetch(payment=payment)
    payment.refresh_from_db()
    assert len(payment.fraud_rules_fired) == 1
    assert PaymentEvent.objects.filter(payment=payment, kind="fraud").count() == 1


def test_a_blocked_payment_captured_before_the_cancel_is_flagged_for_a_person(
    client, tenant, django_capture_on_commit_callbacks
):
    add_rule(tenant, "max_amount", "review", currency="EUR", amount=1000)
    add_rule(tenant, "country_mismatch", "block")
    session = new_session(tenant)
    with django_capture_on_commit_callbacks() as callbacks:
        pay_from(client, session, country="GB")
    payment = latest_payment(session)
    # Someone captures it at the gateway before our task runs.
    from payments.services import payment_ref_for

    registry.gateway_for("simulated").capture_payment(payment_ref_for(payment))
    run_fraud_cancels(callbacks)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED and payment.review_status == "pending"
    assert PaymentEvent.objects.filter(payment=payment, message__contains="Could not cancel").exists()


def test_tor_exits_never_match_the_cards_country(client, tenant):
    add_rule(tenant, "country_mismatch", "review")
    session = new_session(tenant)
    pay_from(client, session, country="T1")
    payment = latest_payment(session)
    assert payment.ip_country == "T1" and payment.review_status == "pending"
    assert "Tor" in payment.fraud_rules_fired[0]["detail"]


def test_without_an_ip_country_the_mismatch_rule_cannot_fire(client, tenant):
    add_rule(tenant, "country_mismatch", "block")
    session = new_session(tenant)
    pay_from(client, session, country=None)
    assert latest_payment(session).fraud_rules_fired == []


# --- Through the Stripe fake (the real stripe SDK) ------------------------------------------------


@pytest.fixture
def on_stripe(settings, stripe_fake, tenant):
    settings.STRIPE_SECRET_KEY = STRIPE_SECRET_KEY
    settings.STRIPE_PUBLISHABLE_KEY = STRIPE_PUBLISHABLE_KEY
    settings.STRIPE_API_BASE = stripe_fake.url
    PaymentSettings.objects.update_or_create(merchant=tenant.merchant, defaults={"gateway": "stripe"})
    return stripe_fake


def test_stripe_a_card_from_another_country_is_held_then_canceled_at_stripe(
    client, tenant, on_stripe, django_capture_on_commit_callbacks
):
    add_rule(tenant, "max_amount", "review", currency="EUR", amount=1000)
    add_rule(tenant, "country_mismatch", "block", label="Card abroad")
    session = new_session(tenant)
    assert session.gateway == "stripe"
    with django_capture_on_commit_callbacks() as callbacks:
        pay_from(client, session, "pm_card_gb", country="US")  # a British card from an American IP
    payment = latest_payment(session)
    assert payment.gateway_payment_id.startswith("pi_")
    assert payment.status == Payment.Status.REQUIRES_CAPTURE and payment.card_country == "GB"
    assert on_stripe.intent(payment.gateway_payment_id)["capture_method"] == "manual"
    assert run_fraud_cancels(callbacks) == 1
    payment.refresh_from_db()
    assert payment.status == Payment.Status.CANCELED
    assert on_stripe.intent(payment.gateway_payment_id)["status"] == "canceled"
    assert any(r.path.endswith(f"/{payment.gateway_payment_id}/cancel") for r in on_stripe.requests)
    assert [f["label"] for f in payment.fraud_rules_fired] == ["max_amount → review", "Card abroad"]


def test_stripe_radar_elevated_risk_flags_a_succeeded_payment(client, tenant, on_stripe):
    add_rule(tenant, "risk_level", "review", min_level="elevated")
    add_rule(tenant, "block_bin", "block", entries=["424242"])  # Stripe does not report BINs
    session = new_session(tenant)
    pay_from(client, session, "pm_card_riskLevelElevated")
    payment = latest_payment(session)
    assert payment.status == Payment.Status.SUCCEEDED and payment.risk_level == "elevated"
    assert payment.card_bin == ""
    assert payment.review_status == "pending" and payment.fraud_outcome == "review"
    assert [f["kind"] for f in payment.fraud_rules_fired] == ["risk_level"]


def test_braintree_reports_the_cards_bin(braintree_gateway, payment_request):
    request = payment_request(currency="USD", merchant_account="fake_usd")
    result = braintree_gateway.confirm_payment(request, payment_method="fake-valid-nonce")
    assert result.card is not None and result.card.bin == "411111" and result.card.country == "USA"


def test_alpha3_card_countries_are_compared_as_alpha2():
    from payments import countries

    assert countries.to_alpha2("USA") == countries.to_alpha2("us") == "US"
    assert countries.to_alpha2("GBR") == "GB" and countries.to_alpha2("XXX") == ""
    assert countries.from_proxy_header("XX") == "" and countries.from_proxy_header("t1") == "T1"
    assert countries.from_proxy_header("<script>") == ""
