"""The merchant API: checkout sessions, payments and refunds, scoped to the caller's merchant."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache

from accounts.models import Membership, Role
from payments.models import CheckoutSession, Payment, Refund
from security.models import AuditEvent
from tests.conftest import make_user
from tests.payments.api_helpers import call, key_for, succeeded_payment
from tests.payments.helpers import new_session, pay

pytestmark = pytest.mark.django_db

SESSIONS = "/api/v1/checkout_sessions"
PAYMENTS = "/api/v1/payments"
REFUNDS = "/api/v1/refunds"


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()


def test_a_write_key_creates_lists_retrieves_and_expires_a_checkout_session(tenant):
    key = key_for(tenant)
    created = call(
        "POST",
        SESSIONS,
        key=key,
        body={
            "amount": 4990,
            "currency": "eur",
            "description": "Order 7",
            "customer_email": "jo@example.com",
        },
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["object"] == "checkout_session" and body["id"].startswith("cs_")
    assert (body["amount"], body["currency"], body["status"]) == (4990, "EUR", "open")
    assert body["livemode"] is False and body["url"].endswith(f"/pay/{body['id']}/")
    assert body["customer_email"] == "j•••@example.com"
    assert body["expires_at"] - body["created"] == 24 * 3600
    session = CheckoutSession.objects.get(public_id=body["id"])
    assert session.merchant == tenant.merchant and session.created_via == "api"
    audit = AuditEvent.objects.get(action="checkout_session.created")
    assert audit.actor_id.startswith("key_") and audit.details["via"] == "api"

    listed = call("GET", SESSIONS, key=key).json()
    assert [s["id"] for s in listed["data"]] == [body["id"]] and listed["has_more"] is False
    assert call("GET", f"{SESSIONS}/{body['id']}", key=key).json() == body

    expired = call("POST", f"{SESSIONS}/{body['id']}/expire", key=key)
    assert expired.status_code == 200 and expired.json()["status"] == "expired"
    again = call("POST", f"{SESSIONS}/{body['id']}/expire", key=key)
    assert again.status_code == 409 and again.json()["error"]["code"] == "illegal_transition"


def test_payments_are_listed_and_retrieved_with_public_fields_and_a_masked_email(tenant):
    payment = succeeded_payment(tenant, amount=2500, email="buyer@example.com")
    key = key_for(tenant, scope="read")
    response = call("GET", f"{PAYMENTS}/{payment.public_id}", key=key)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "payment" and body["id"] == payment.public_id
    assert (body["amount"], body["currency"], body["status"]) == (2500, "EUR", "succeeded")
    assert (body["amount_captured"], body["amount_refunded"], body["amount_refundable"]) == (2500, 0, 2500)
    assert body["card"] == {"brand": "visa", "last4": "4242", "country": "US"}
    assert body["customer_email"] == "b•••@example.com"
    assert body["checkout_session"] == payment.checkout_session.public_id
    text = response.content.decode()
    assert "buyer@example.com" not in text and str(payment.pk) not in body.values()
    assert payment.gateway_payment_id not in text and "fingerprint" not in text
    listed = call("GET", PAYMENTS, key=key, status="succeeded").json()
    assert [p["id"] for p in listed["data"]] == [payment.public_id]
    assert call("GET", PAYMENTS, key=key, status="failed").json()["data"] == []


def test_another_merchants_ids_are_not_found_and_nothing_changes(tenant, outsider):
    payment = succeeded_payment(tenant)
    session = new_session(tenant)
    theirs = key_for(outsider)
    for path in (
        f"{SESSIONS}/{session.public_id}",
        f"{PAYMENTS}/{payment.public_id}",
    ):
        response = call("GET", path, key=theirs)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    expire = call("POST", f"{SESSIONS}/{session.public_id}/expire", key=theirs)
    assert expire.status_code == 404
    refund = call("POST", REFUNDS, key=theirs, body={"payment": payment.public_id, "reason": "steal"})
    assert refund.status_code == 404 and refund.json()["error"]["code"] == "not_found"
    ours = call("POST", REFUNDS, key=key_for(tenant), body={"payment": payment.public_id, "reason": "ok"})
    refund_id = ours.json()["id"]
    assert call("GET", f"{REFUNDS}/{refund_id}", key=theirs).status_code == 404
    for path in (SESSIONS, PAYMENTS, REFUNDS):
        assert call("GET", path, key=theirs).json()["data"] == []
    session.refresh_from_db()
    assert session.status == "open" and Refund.objects.count() == 1


def test_a_read_only_key_reads_but_cannot_create_anything(tenant):
    payment = succeeded_payment(tenant)
    key = key_for(tenant, scope="read")
    assert call("GET", SESSIONS, key=key).status_code == 200
    created = call("POST", SESSIONS, key=key, body={"amount": 100, "currency": "EUR"})
    assert created.status_code == 403 and created.json()["error"]["code"] == "permission_denied"
    assert "read-only" in created.json()["error"]["message"]
    refund = call("POST", REFUNDS, key=key, body={"payment": payment.public_id, "reason": "x"})
    assert refund.status_code == 403
    assert CheckoutSession.objects.filter(created_via="api").count() == 0 and not Refund.objects.exists()


def test_requests_without_a_valid_key_get_401_in_json():
    for headers in ({}, {"key": "fp_test_" + "x" * 44}):
        response = call("GET", PAYMENTS, **headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] in ("not_authenticated", "authentication_failed")


def test_refunds_through_the_api_never_exceed_what_was_captured_counting_pending(tenant):
    payment = succeeded_payment(tenant, amount=1000)
    key = key_for(tenant)
    first = call(
        "POST", REFUNDS, key=key, body={"payment": payment.public_id, "amount": 600, "reason": "Late"}
    )
    assert first.status_code == 201, first.json()
    body = first.json()
    assert body["object"] == "refund" and body["payment"] == payment.public_id
    assert (body["amount"], body["currency"], body["status"]) == (600, "EUR", "succeeded")
    # As a card refund often is for a while at Stripe: still pending, not yet counted as refunded.
    Refund.objects.filter(public_id=body["id"]).update(status="pending")
    Payment.objects.filter(pk=payment.pk).update(amount_refunded=0)
    too_much = call(
        "POST", REFUNDS, key=key, body={"payment": payment.public_id, "amount": 401, "reason": "x"}
    )
    assert too_much.status_code == 400
    assert too_much.json()["error"] == {
        "code": "amount_too_large",
        "message": "You can refund at most 4.00 EUR (refunds still pending count too).",
    }
    rest = call("POST", REFUNDS, key=key, body={"payment": payment.public_id, "reason": "Rest"})
    assert rest.status_code == 201 and rest.json()["amount"] == 400
    nothing_left = call(
        "POST", REFUNDS, key=key, body={"payment": payment.public_id, "amount": 1, "reason": "x"}
    )
    assert nothing_left.status_code == 400 and nothing_left.json()["error"]["code"] == "amount_too_large"
    assert sorted(Refund.objects.values_list("amount", flat=True)) == [400, 600]
    assert set(Refund.objects.values_list("created_via", flat=True)) == {"api"}
    listed = call("GET", REFUNDS, key=key, payment=payment.public_id).json()
    assert [r["amount"] for r in listed["data"]] == [400, 600]


def test_a_payment_that_did_not_succeed_cannot_be_refunded(tenant):
    session = new_session(tenant)
    from django.test import Client

    pay(Client(), session, "pm_card_chargeDeclined")
    payment = Payment.objects.get(checkout_session=session)
    response = call("POST", REFUNDS, key=key_for(tenant), body={"payment": payment.public_id, "reason": "x"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "not_refundable"
    assert not Refund.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": "12.50", "currency": "EUR"}, "amount"),
        ({"amount": 12.5, "currency": "EUR"}, "amount"),
        ({"amount": True, "currency": "EUR"}, "amount"),
        ({"amount": 0, "currency": "EUR"}, "amount"),
        ({"amount": -5, "currency": "EUR"}, "amount"),
        ({"amount": 10**16, "currency": "EUR"}, "amount"),
        ({"currency": "EUR"}, "amount"),
        ({"amount": 100}, "currency"),
        ({"amount": 100, "currency": "XXX"}, "currency"),
        ({"amount": 100, "currency": "euro"}, "currency"),
        ({"amount": 100, "currency": "EUR", "customer_email": "not-an-email"}, "customer_email"),
        ({"amount": 100, "currency": "EUR", "expires_in": 60}, "expires_in"),
        ({"amount": 100, "currency": "EUR", "ammount": 100}, "ammount"),
    ],
)
def test_invalid_bodies_get_a_stable_code_and_a_message_per_field(tenant, body, field):
    response = call("POST", SESSIONS, key=key_for(tenant), body=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["message"]
    assert list(error["fields"]) == [field] and error["fields"][field][0]
    assert not CheckoutSession.objects.exists()


def test_malformed_json_is_a_clear_400(tenant):
    from django.test import Client

    response = Client().post(
        SESSIONS,
        data="{not json",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key_for(tenant)}",
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "parse_error"


def test_invalid_filters_are_field_errors(tenant):
    key = key_for(tenant)
    response = call("GET", PAYMENTS, key=key, status="paid")
    assert response.status_code == 400 and "status" in response.json()["error"]["fields"]


def test_a_test_key_sees_only_test_objects(tenant):
    test_payment = succeeded_payment(tenant)
    live_payment = succeeded_payment(tenant)
    Payment.objects.filter(pk=live_payment.pk).update(mode="live")
    key = key_for(tenant, scope="read", mode="test")
    assert [p["id"] for p in call("GET", PAYMENTS, key=key).json()["data"]] == [test_payment.public_id]
    assert call("GET", f"{PAYMENTS}/{live_payment.public_id}", key=key).status_code == 404


def test_a_live_key_cannot_create_test_mode_links(tenant):
    live_key = key_for(tenant, mode="live")
    response = call("POST", SESSIONS, key=live_key, body={"amount": 100, "currency": "EUR"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "mode_mismatch"
    assert not CheckoutSession.objects.exists()
    assert not AuditEvent.objects.filter(action="checkout_session.created").exists()


# --- Browser sessions verified with the second factor ---------------------------------------------


def test_a_verified_team_session_uses_the_api_like_a_key(verified_client, tenant):
    payment = succeeded_payment(tenant)
    client = verified_client(tenant.owner)
    assert call("GET", PAYMENTS, client=client).json()["data"][0]["id"] == payment.public_id
    created = call("POST", SESSIONS, client=client, body={"amount": 700, "currency": "GBP"})
    assert created.status_code == 201
    assert CheckoutSession.objects.get(public_id=created.json()["id"]).created_by == tenant.owner
    refund = call("POST", REFUNDS, client=client, body={"payment": payment.public_id, "reason": "Asked"})
    assert refund.status_code == 201
    assert Refund.objects.get().created_by == tenant.owner


def test_analysts_read_but_cannot_write_and_developers_cannot_refund(verified_client, tenant):
    payment = succeeded_payment(tenant)
    analyst = verified_client(tenant.teammate)
    assert call("GET", PAYMENTS, client=analyst).status_code == 200
    refused = call("POST", SESSIONS, client=analyst, body={"amount": 700, "currency": "GBP"})
    assert refused.status_code == 403 and "read-only" in refused.json()["error"]["message"]
    developer = make_user("dev@alpha.example.com")
    Membership.objects.create(user=developer, merchant=tenant.merchant, role=Role.DEVELOPER)
    dev = verified_client(developer)
    assert call("POST", SESSIONS, client=dev, body={"amount": 700, "currency": "GBP"}).status_code == 201
    refund = call("POST", REFUNDS, client=dev, body={"payment": payment.public_id, "reason": "x"})
    assert refund.status_code == 403 and not Refund.objects.exists()
    assert refund.json()["error"]["message"] == (
        "Your role (developer) does not allow you to refund payments; only owners and admins can."
    )


def test_refunds_from_a_session_need_a_fresh_second_factor(verified_client, tenant):
    payment = succeeded_payment(tenant)
    client = verified_client(tenant.owner)
    session = client.session
    session["otp_verified_at"] = int(time.time()) - 600
    session.save()
    body = {"payment": payment.public_id, "reason": "x"}
    stale = call("POST", REFUNDS, client=client, body=body, idem="refund-after-step-up")
    assert stale.status_code == 403 and stale.json()["error"]["code"] == "recent_otp_required"
    assert not Refund.objects.exists()
    # Refused before the Idempotency-Key is taken: after a fresh code the same retry refunds.
    session["otp_verified_at"] = int(time.time())
    session.save()
    retried = call("POST", REFUNDS, client=client, body=body, idem="refund-after-step-up")
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried
    assert Refund.objects.get().public_id == retried.json()["id"]


def test_a_session_without_a_merchant_gets_403(verified_client):
    loner = make_user("loner@example.com")
    response = call("GET", PAYMENTS, client=verified_client(loner))
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "code": "permission_denied",
            "message": "This API needs a merchant API key or a merchant team session.",
        }
    }


# --- Rate limits ----------------------------------------------------------------------------------


def test_rate_limit_applies_to_every_call_and_a_throttled_post_is_not_remembered(tenant, settings):
    settings.API_RATE_LIMIT = "3/minute"
    key = key_for(tenant)
    other = key_for(tenant, name="other")
    body = {"amount": 100, "currency": "EUR"}
    assert call("POST", SESSIONS, key=key, body=body, idem="order-1").status_code == 201
    assert call("POST", SESSIONS, key=key, body=body, idem="order-1").status_code == 201  # replay
    assert call("GET", SESSIONS, key=key).status_code == 200
    limited = call("POST", SESSIONS, key=key, body=body, idem="order-2")
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
    assert limited.json()["error"]["code"] == "throttled"
    assert call("GET", SESSIONS, key=other).status_code == 200  # per key
    from payments.models import IdempotencyRecord

    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["order-1"]
    cache.clear()  # the window passes
    retried = call("POST", SESSIONS, key=key, body=body, idem="order-2")
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried
    assert CheckoutSession.objects.count() == 2
