"""Webhooks: verified, stored once, applied once, in order; refunds through the gateway."""

from __future__ import annotations

import json
import time

import pytest

from payments.gateways import registry
from payments.models import Payment, PaymentEvent, Refund, WebhookEvent
from payments.services import refund_create
from security.errors import ApplicationError
from tests.payments.helpers import latest_payment, new_session, pay, post_stripe_event

pytestmark = pytest.mark.django_db


def intent_dict(payment: Payment) -> dict:
    from payments.models import SimulatedIntent

    return dict(SimulatedIntent.objects.get(intent_id=payment.gateway_payment_id).data["intent"])


def started_payment(client, tenant) -> Payment:
    session = new_session(tenant)
    client.get(f"/pay/{session.public_id}/")
    return latest_payment(session)


def test_signed_event_is_stored_acknowledged_and_applied_once(
    client, tenant, django_capture_on_commit_callbacks
):
    payment = started_payment(client, tenant)
    intent = intent_dict(payment) | {"status": "processing"}
    with django_capture_on_commit_callbacks(execute=True):
        first = post_stripe_event(
            client, "payment_intent.processing", intent, event_id="evt_sim_a1", created=int(time.time())
        )
    assert first.status_code == 200 and first.json() == {"received": True, "duplicate": False}
    payment.refresh_from_db()
    assert payment.status == Payment.Status.PROCESSING
    with django_capture_on_commit_callbacks(execute=True):
        again = post_stripe_event(
            client, "payment_intent.processing", intent, event_id="evt_sim_a1", created=int(time.time())
        )
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert WebhookEvent.objects.count() == 1
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.APPLIED
    assert PaymentEvent.objects.filter(payment=payment, kind="status", to_status="processing").count() == 1


def test_bad_signature_stale_oversized_and_malformed_bodies_are_refused_and_not_stored(client, tenant):
    payment = started_payment(client, tenant)
    intent = intent_dict(payment)
    bad = post_stripe_event(
        client, "payment_intent.succeeded", intent, event_id="evt_sim_b", created=1, secret="whsec_" + "w" * 8
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_signature"

    from payments.gateways.simulated import build_signed_event

    body, headers = build_signed_event(
        "payment_intent.succeeded",
        intent,
        secret=registry.stripe_webhook_secrets()[0],
        event_id="evt_sim_c",
        timestamp=int(time.time()) - 301,
    )
    stale = client.post(
        "/webhooks/stripe/",
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=headers["Stripe-Signature"],
    )
    assert stale.status_code == 400 and stale.json()["error"]["code"] == "stale_timestamp"

    big = client.post(
        "/webhooks/stripe/",
        data=b"{" + b" " * (1024 * 1024) + b"}",
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE="t=1,v1=00",
    )
    assert big.status_code == 400 and big.json()["error"]["code"] == "too_large"

    from payments.gateways.simulated import sign_payload

    junk = b"not json at all"
    malformed = client.post(
        "/webhooks/stripe/",
        data=junk,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign_payload(junk, registry.stripe_webhook_secrets()[0]),
    )
    assert malformed.status_code == 400
    assert WebhookEvent.objects.count() == 0
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REQUIRES_PAYMENT_METHOD


def test_out_of_order_events_leave_the_newest_state(client, tenant, django_capture_on_commit_callbacks):
    payment = started_payment(client, tenant)
    intent = intent_dict(payment)
    now = int(time.time())
    with django_capture_on_commit_callbacks(execute=True):  # applied before the next arrives
        post_stripe_event(
            client,
            "payment_intent.succeeded",
            intent | {"status": "succeeded", "amount_received": payment.amount},
            event_id="evt_sim_new",
            created=now,
        )
    with django_capture_on_commit_callbacks(execute=True):
        post_stripe_event(
            client,
            "payment_intent.processing",
            intent | {"status": "processing"},
            event_id="evt_sim_old",
            created=now - 30,
        )
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    ignored = PaymentEvent.objects.get(payment=payment, kind="ignored")
    assert ignored.gateway_event_id == "evt_sim_old"
    assert WebhookEvent.objects.get(event_id="evt_sim_old").status == WebhookEvent.Status.IGNORED


def test_events_waiting_together_are_applied_in_the_gateways_order(
    client, tenant, django_capture_on_commit_callbacks
):
    payment = started_payment(client, tenant)
    intent = intent_dict(payment)
    now = int(time.time())
    with django_capture_on_commit_callbacks(execute=True):  # both stored before the drain runs
        post_stripe_event(
            client,
            "payment_intent.succeeded",
            intent | {"status": "succeeded", "amount_received": payment.amount},
            event_id="evt_sim_second",
            created=now,
        )
        post_stripe_event(
            client,
            "payment_intent.processing",
            intent | {"status": "processing"},
            event_id="evt_sim_first",
            created=now - 30,
        )

    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    timeline = PaymentEvent.objects.filter(payment=payment, kind="status").order_by("pk")
    assert [(e.gateway_event_id, e.to_status) for e in timeline] == [
        ("evt_sim_first", "processing"),
        ("evt_sim_second", "succeeded"),
    ]
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {WebhookEvent.Status.APPLIED}


def test_unknown_event_types_are_stored_and_ignored(client, tenant, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_stripe_event(
            client,
            "customer.created",
            {"id": "cus_x", "object": "customer"},
            event_id="evt_sim_unknown",
            created=int(time.time()),
        )
    assert response.status_code == 200
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.IGNORED


def test_webhook_payload_is_encrypted_at_rest(client, tenant):
    payment = started_payment(client, tenant)
    post_stripe_event(
        client,
        "payment_intent.processing",
        intent_dict(payment) | {"status": "processing"},
        event_id="evt_sim_enc",
        created=int(time.time()),
    )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT event FROM payments_webhookevent")
        stored = str(cursor.fetchone()[0])
    assert payment.gateway_payment_id not in stored
    assert WebhookEvent.objects.get().event["__dc__"] == "GatewayEvent"


def test_full_and_partial_refunds_never_exceed_what_was_captured(client, tenant):
    session = new_session(tenant, amount=1000)
    pay(client, session, "pm_card_visa")
    payment = latest_payment(session)
    first = refund_create(actor=tenant.owner, payment=payment, amount=300, reason="Item missing")
    assert first.status in (Refund.Status.PENDING, Refund.Status.SUCCEEDED)
    with pytest.raises(ApplicationError, match="at most 7.00 EUR"):
        refund_create(actor=tenant.owner, payment=payment, amount=701, reason="Too much")
    rest = refund_create(actor=tenant.owner, payment=payment, amount=None, reason="Order canceled")
    assert rest.amount == 700
    with pytest.raises(ApplicationError):
        refund_create(actor=tenant.owner, payment=payment, amount=1, reason="Nothing left")
    assert Refund.objects.filter(payment=payment).count() == 2


def test_refund_is_idempotent_per_refund_id(client, tenant):
    session = new_session(tenant, amount=1000)
    pay(client, session, "pm_card_visa")
    payment = latest_payment(session)
    a = refund_create(
        actor=tenant.owner, payment=payment, amount=500, reason="r", refund_public_id="re_" + "a" * 24
    )
    b = refund_create(
        actor=tenant.owner, payment=payment, amount=500, reason="r", refund_public_id="re_" + "a" * 24
    )
    assert a.pk == b.pk and Refund.objects.count() == 1


def test_only_owners_and_admins_of_the_payments_merchant_can_refund(client, tenant, outsider):
    session = new_session(tenant, amount=1000)
    pay(client, session, "pm_card_visa")
    payment = latest_payment(session)
    for who in (tenant.teammate, outsider.owner):  # an analyst; another merchant's owner
        with pytest.raises(ApplicationError, match="Only owners and admins can refund"):
            refund_create(actor=who, payment=payment, amount=None, reason="Not mine to refund")
    assert not Refund.objects.exists()
    payment.refresh_from_db()
    assert payment.amount_refunded == 0


def test_refund_of_a_failed_payment_is_refused(client, tenant):
    session = new_session(tenant)
    pay(client, session, "pm_card_chargeDeclined")
    with pytest.raises(ApplicationError, match="Only a payment that succeeded"):
        refund_create(actor=tenant.owner, payment=latest_payment(session), amount=None, reason="r")
    assert not Refund.objects.exists()


def test_refund_status_follows_webhooks(client, tenant, django_capture_on_commit_callbacks):
    session = new_session(tenant, amount=1000)
    pay(client, session, "pm_card_visa")
    payment = latest_payment(session)
    refund = refund_create(actor=tenant.owner, payment=payment, amount=400, reason="Damaged")
    refund_obj = {
        "id": refund.gateway_refund_id,
        "object": "refund",
        "amount": 400,
        "currency": "eur",
        "payment_intent": payment.gateway_payment_id,
        "status": "failed",
        "failure_reason": "expired_or_canceled_card",
        "metadata": {"refund_id": refund.public_id},
    }
    with django_capture_on_commit_callbacks(execute=True):
        post_stripe_event(
            client, "refund.failed", refund_obj, event_id="evt_sim_rf", created=int(time.time())
        )
    refund.refresh_from_db()
    payment.refresh_from_db()
    assert refund.status == Refund.Status.FAILED
    assert payment.amount_refunded == 0


def test_dispute_events_open_and_close_a_dispute(client, tenant, django_capture_on_commit_callbacks):
    session = new_session(tenant, amount=2500)
    pay(client, session, "pm_card_visa")
    payment = latest_payment(session)
    now = int(time.time())
    dispute = {
        "id": "dp_sim_1",
        "object": "dispute",
        "amount": 2500,
        "currency": "eur",
        "reason": "fraudulent",
        "status": "needs_response",
        "payment_intent": payment.gateway_payment_id,
        "evidence_details": {"due_by": now + 7 * 86400},
    }
    with django_capture_on_commit_callbacks(execute=True):
        post_stripe_event(client, "charge.dispute.created", dispute, event_id="evt_sim_d1", created=now)
        post_stripe_event(
            client,
            "charge.dispute.closed",
            dispute | {"status": "lost"},
            event_id="evt_sim_d2",
            created=now + 5,
        )
    payment.refresh_from_db()
    d = payment.disputes.get()
    assert d.status == "lost" and d.evidence_due_by is not None
    assert payment.amount_disputed == 2500


def test_reconcile_command_fixes_a_stuck_payment(client, tenant):
    from django.core.management import call_command

    session = new_session(tenant)
    pay(client, session, "pm_card_visa")
    payment = latest_payment(session)
    Payment.objects.filter(pk=payment.pk).update(status=Payment.Status.PROCESSING)
    call_command("reconcile_payments", "--since", "2d")
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED


def test_reconcile_command_refuses_a_bad_since():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--since"):
        call_command("reconcile_payments", "--since", "yesterday")


def test_webhook_json_is_the_stripe_shape(client, tenant):
    payment = started_payment(client, tenant)
    from payments.gateways.simulated import SimulatedGateway

    gateway = registry.gateway_for("simulated")
    assert isinstance(gateway, SimulatedGateway)
    body, headers = gateway.signed_payment_event(payment.gateway_payment_id)
    event = json.loads(body)
    assert event["object"] == "event" and event["data"]["object"]["id"] == payment.gateway_payment_id
    assert headers["Stripe-Signature"].startswith("t=")


def test_refunding_a_flagged_payment_whose_money_is_already_being_refunded_closes_its_review(
    verified_client, tenant
):
    from tests.payments.test_review_queue import decide, flagged_payment

    payment = flagged_payment(tenant)
    first = refund_create(actor=tenant.owner, payment=payment, amount=None, reason="Customer asked")
    # As a card refund often is for a while at Stripe: still pending, not yet counted as refunded.
    Refund.objects.filter(pk=first.pk).update(status=Refund.Status.PENDING)
    Payment.objects.filter(pk=payment.pk).update(amount_refunded=0)

    owner = verified_client(tenant.owner)
    response = decide(owner, payment, "refund", "Looks like card testing")

    assert response.status_code == 302
    payment.refresh_from_db()
    assert payment.review_status == "rejected"
    assert list(Refund.objects.filter(payment=payment)) == [first]  # nothing refunded twice
    page = owner.get(response["Location"]).content.decode()
    assert "Decision recorded." in page and "more than zero" not in page
