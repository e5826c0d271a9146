"""Outgoing merchant webhooks: events on commit, signed, delivered, retried for three days, resent."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from django.utils import timezone

from payments import merchant_webhooks, services, tasks
from payments.merchant_webhooks import (
    RETRY_WINDOW,
    retry_delay,
    signature_verify,
    webhook_delivery_attempt,
    webhook_endpoint_set_enabled,
)
from payments.models import WebhookDelivery, WebhookDeliveryAttempt
from tests.payments.api_helpers import call, key_for, succeeded_payment
from tests.payments.helpers import latest_payment, new_session, pay
from tests.payments.webhook_helpers import register

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()


def parse_signature(header: str) -> tuple[int, str]:
    parts = dict(part.split("=", 1) for part in header.split(","))
    return int(parts["t"]), parts["v1"]


def test_a_succeeded_payment_is_posted_signed_and_verifiable(tenant, receiver):
    issued = register(tenant, receiver)
    payment = succeeded_payment(tenant, amount=4990, email="buyer@example.com")
    delivery = WebhookDelivery.objects.get()
    assert delivery.event_type == "payment.succeeded" and delivery.status == "pending"
    assert tasks.sweep_merchant_webhooks() == 1  # enqueued and (eagerly) sent

    [request] = receiver.posts
    assert request.path == "/hooks/fintech" and request.header("content-type") == "application/json"
    body = request.body.decode()
    timestamp, v1 = parse_signature(request.header("Fintech-Signature"))
    expected = hmac.new(issued.secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(v1, expected) and abs(time.time() - timestamp) < 60
    assert signature_verify(secret=issued.secret, body=body, header=request.header("Fintech-Signature"))
    assert not signature_verify(
        secret=issued.secret, body=body + " ", header=request.header("Fintech-Signature")
    )
    assert not signature_verify(
        secret=issued.secret, body=body, header=request.header("Fintech-Signature"), now=timestamp + 600
    )

    event = json.loads(body)
    assert event["id"].startswith("evt_") and event["type"] == "payment.succeeded"
    assert event["object"] == "event" and event["livemode"] is False and isinstance(event["created"], int)
    obj = event["data"]["object"]
    assert obj["object"] == "payment" and obj["id"] == payment.public_id
    assert (obj["amount"], obj["currency"], obj["status"]) == (4990, "EUR", "succeeded")
    assert obj["customer_email"] == "b•••@example.com" and "buyer@example.com" not in body
    assert payment.gateway_payment_id not in body and "fingerprint" not in body

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 200)
    attempt = delivery.attempt_log.get()
    assert (
        attempt.status_code == 200 and attempt.response_snippet == '{"received": true}' and not attempt.error
    )


def test_deliveries_exist_only_if_the_change_commits_and_are_sent_after_commit(
    tenant, receiver, django_capture_on_commit_callbacks
):
    register(tenant, receiver)
    session = new_session(tenant)
    Client().get(f"/pay/{session.public_id}/")
    payment = latest_payment(session)
    from payments.gateways.base import GatewayPayment

    failed = GatewayPayment(
        gateway="simulated",
        gateway_payment_id=payment.gateway_payment_id,
        status="failed",
        amount=payment.amount,
        currency=payment.currency,
        decline_code="generic_decline",
    )
    with pytest.raises(RuntimeError), transaction.atomic():
        services.payment_apply_gateway_state(payment=payment, result=failed, source="gateway")
        raise RuntimeError("the rest of the transaction failed")
    assert not WebhookDelivery.objects.exists()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.payment_apply_gateway_state(payment=payment, result=failed, source="gateway")
    assert WebhookDelivery.objects.get().event_type == "payment.failed"
    assert receiver.posts == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()
    assert len(receiver.posts) == 1 and json.loads(receiver.posts[0].body)["type"] == "payment.failed"


def test_every_payment_and_refund_event_type_is_sent(tenant, receiver):
    register(tenant, receiver)
    session = new_session(tenant)
    pay(Client(), session, "pm_card_threeDSecure2Required")
    payment = latest_payment(session)
    Client().post(f"/checkout/simulated/3ds/{payment.gateway_payment_id}/", {"decision": "approve"})
    call(
        "POST", "/api/v1/refunds", key=key_for(tenant), body={"payment": payment.public_id, "reason": "Late"}
    )
    types = list(WebhookDelivery.objects.order_by("id").values_list("event_type", flat=True))
    assert types == ["payment.requires_action", "payment.succeeded", "refund.created", "refund.succeeded"]
    tasks.sweep_merchant_webhooks()
    sent = [json.loads(r.body) for r in receiver.posts]
    assert sorted(e["type"] for e in sent) == sorted(types)
    refund = next(e["data"]["object"] for e in sent if e["type"] == "refund.created")
    assert (
        refund["object"] == "refund" and refund["payment"] == payment.public_id and refund["amount"] == 4990
    )


def test_an_endpoint_gets_only_the_events_it_subscribed_to(tenant, receiver):
    register(tenant, receiver, event_types=["refund.created"])
    payment = succeeded_payment(tenant)
    assert not WebhookDelivery.objects.exists()
    services.refund_create(actor=tenant.owner, payment=payment, amount=None, reason="r")
    assert list(WebhookDelivery.objects.values_list("event_type", flat=True)) == ["refund.created"]


def test_each_endpoint_gets_the_same_event_signed_with_its_own_secret(tenant, receiver):
    a, b = register(tenant, receiver), register(tenant, receiver)
    succeeded_payment(tenant)
    tasks.sweep_merchant_webhooks()
    first, second = receiver.posts
    assert first.body == second.body
    headers = {first.header("Fintech-Signature"), second.header("Fintech-Signature")}
    for issued in (a, b):
        assert (
            sum(signature_verify(secret=issued.secret, body=first.body.decode(), header=h) for h in headers)
            == 1
        )


def test_failed_deliveries_are_retried_with_growing_countdowns(
    tenant, receiver, scheduled, django_capture_on_commit_callbacks
):
    receiver.always(500, b"<html>Internal Server Error</html>")
    register(tenant, receiver)
    succeeded_payment(tenant)
    delivery = WebhookDelivery.objects.get()
    now = timezone.now()
    for _ in range(8):
        with django_capture_on_commit_callbacks(execute=True):
            result = webhook_delivery_attempt(delivery_pk=delivery.pk, now=now)
        assert result.attempted and result.status == "pending"
        delivery.refresh_from_db()
        # Early means nothing: the next attempt waits its turn.
        assert not webhook_delivery_attempt(delivery_pk=delivery.pk, now=now).attempted
        now = delivery.next_attempt_at
    assert len(scheduled) == 8
    assert all(later > earlier for earlier, later in zip(scheduled, scheduled[1:], strict=False))
    assert 60 <= scheduled[0] <= 66 and 120 <= scheduled[1] <= 132 and scheduled[7] >= 128 * 60
    assert len(receiver.posts) == 8
    attempts = list(delivery.attempt_log.all())
    assert [a.number for a in attempts] == list(range(1, 9))
    assert all(a.status_code == 500 and "answered 500" in a.error for a in attempts)
    assert attempts[0].response_snippet == "<html>Internal Server Error</html>"
    assert delivery.last_status_code == 500 and delivery.attempts == 8


def test_the_celery_task_schedules_the_retry_through_the_broker(
    tenant, receiver, scheduled, django_capture_on_commit_callbacks
):
    receiver.always(503)
    register(tenant, receiver)
    succeeded_payment(tenant)
    delivery = WebhookDelivery.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.deliver_merchant_webhook(delivery.pk) == "pending"
        assert tasks.deliver_merchant_webhook(delivery.pk) == "skipped"  # a duplicate message does nothing
    assert len(scheduled) == 1 and 60 <= scheduled[0] <= 66
    assert WebhookDeliveryAttempt.objects.count() == 1


def test_the_retry_delay_doubles_from_a_minute_up_to_six_hours():
    assert [retry_delay(n, jitter=0).total_seconds() for n in range(1, 12)] == [
        60,
        120,
        240,
        480,
        960,
        1920,
        3840,
        7680,
        15360,
        21600,
        21600,
    ]
    assert retry_delay(3, jitter=1).total_seconds() == pytest.approx(264)


def test_delivery_gives_up_three_days_after_the_event(
    tenant, receiver, scheduled, django_capture_on_commit_callbacks
):
    receiver.always(502)
    register(tenant, receiver)
    succeeded_payment(tenant)
    delivery = WebhookDelivery.objects.get()
    deadline = delivery.window_started_at + RETRY_WINDOW
    now = delivery.next_attempt_at
    for _ in range(40):
        with django_capture_on_commit_callbacks(execute=True):
            result = webhook_delivery_attempt(delivery_pk=delivery.pk, now=now)
        delivery.refresh_from_db()
        if result.status != "pending":
            break
        now = delivery.next_attempt_at
    assert delivery.status == "failed" and delivery.next_attempt_at is None
    assert "Gave up after 3 days" in delivery.last_error
    attempts = list(delivery.attempt_log.order_by("number"))
    assert attempts[-1].started_at == deadline  # the last try is made right at the deadline
    assert all(a.started_at <= deadline for a in attempts)
    assert 15 <= len(attempts) <= 25 and len(scheduled) == len(attempts) - 1
    # Nothing more happens, however often the task runs.
    assert not webhook_delivery_attempt(delivery_pk=delivery.pk, now=deadline + timedelta(days=1)).attempted
    assert len(receiver.posts) == len(attempts)


def test_a_redirect_timeout_or_closed_port_is_a_failed_attempt(tenant, receiver, dns, settings, scheduled):
    register(tenant, receiver)
    succeeded_payment(tenant)
    delivery = WebhookDelivery.objects.get()
    receiver.answer(302, b"", {"Location": "/elsewhere"})
    webhook_delivery_attempt(delivery_pk=delivery.pk)
    assert "Redirects are not followed" in delivery.attempt_log.get(number=1).error

    settings.OUTBOUND_READ_TIMEOUT = 0.2
    receiver.delay = 0.6
    webhook_delivery_attempt(delivery_pk=delivery.pk, now=timezone.now() + timedelta(hours=1))
    assert "Timed out" in delivery.attempt_log.get(number=2).error
    for _ in range(50):  # let the slow answer finish, so it cannot leak into another test
        if len(receiver.posts) == 2:
            break
        time.sleep(0.05)
    receiver.delay = 0

    delivery.endpoint.url = "http://hooks.example.com:1/closed"
    delivery.endpoint.save(update_fields=["url"])
    webhook_delivery_attempt(delivery_pk=delivery.pk, now=timezone.now() + timedelta(hours=2))
    third = delivery.attempt_log.get(number=3)
    assert third.status_code is None and third.error
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.attempts == 3


def test_an_address_that_turns_private_is_refused_at_delivery(tenant, receiver, dns, scheduled):
    register(tenant, receiver)
    succeeded_payment(tenant)
    delivery = WebhookDelivery.objects.get()
    dns.answers["hooks.example.com"] = "169.254.169.254"  # rebinding to the cloud metadata service
    webhook_delivery_attempt(delivery_pk=delivery.pk)
    attempt = delivery.attempt_log.get()
    assert attempt.status_code is None
    assert attempt.error == "Refused: hooks.example.com resolves to 169.254.169.254, a link-local address."
    assert receiver.posts == []
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.next_attempt_at > timezone.now()  # retried later


def test_without_the_test_switch_loopback_is_refused_at_delivery_too(tenant, receiver, settings, scheduled):
    register(tenant, receiver)
    succeeded_payment(tenant)
    settings.OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS = False
    webhook_delivery_attempt(delivery_pk=WebhookDelivery.objects.get().pk)
    assert "a loopback address" in WebhookDeliveryAttempt.objects.get().error
    assert receiver.posts == []


def test_a_failed_delivery_can_be_resent_with_a_fresh_window(
    tenant, receiver, verified_client, django_capture_on_commit_callbacks
):
    receiver.always(500)
    issued = register(tenant, receiver)
    succeeded_payment(tenant)
    delivery = WebhookDelivery.objects.get()
    webhook_delivery_attempt(delivery_pk=delivery.pk)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status="failed", next_attempt_at=None, window_started_at=timezone.now() - timedelta(days=4)
    )
    receiver.always(200, b"ok")
    client = verified_client(tenant.owner)
    url = f"/developers/webhooks/{issued.endpoint.public_id}/deliveries/{delivery.public_id}/resend/"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url)
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == "succeeded" and delivery.attempts == 2
    assert timezone.now() - delivery.window_started_at < timedelta(minutes=1)
    second = delivery.attempt_log.get(number=2)
    assert second.manual and second.status_code == 200
    assert receiver.posts[0].body == receiver.posts[1].body  # the same event, signed again
    from security.models import AuditEvent

    assert AuditEvent.objects.filter(action="webhook_delivery.resent").exists()


def test_a_disabled_endpoint_gets_nothing_and_its_pending_deliveries_are_canceled(tenant, receiver):
    issued = register(tenant, receiver)
    succeeded_payment(tenant)
    delivery = WebhookDelivery.objects.get()
    webhook_endpoint_set_enabled(actor=tenant.owner, endpoint=issued.endpoint, enabled=False)
    result = webhook_delivery_attempt(delivery_pk=delivery.pk)
    delivery.refresh_from_db()
    assert not result.attempted and delivery.status == "canceled" and receiver.posts == []
    succeeded_payment(tenant)
    assert WebhookDelivery.objects.count() == 1
    webhook_endpoint_set_enabled(actor=tenant.owner, endpoint=issued.endpoint, enabled=True)
    succeeded_payment(tenant)
    assert WebhookDelivery.objects.count() == 2


def test_the_sweeper_runs_every_minute_and_skips_deliveries_in_flight(tenant, receiver, settings):
    from django.conf import settings as project_settings

    entry = project_settings.CELERY_BEAT_SCHEDULE["sweep-merchant-webhooks"]
    assert entry["task"] == "payments.sweep_merchant_webhooks" and entry["schedule"] == 60
    register(tenant, receiver)
    succeeded_payment(tenant)
    WebhookDelivery.objects.update(lease_until=timezone.now() + timedelta(minutes=1))
    assert merchant_webhooks.webhook_deliveries_due() == []
    WebhookDelivery.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
    assert len(merchant_webhooks.webhook_deliveries_due()) == 1


def test_finished_deliveries_are_kept_30_days(tenant, receiver):
    register(tenant, receiver)
    succeeded_payment(tenant)
    succeeded_payment(tenant)
    old, recent = WebhookDelivery.objects.order_by("id")
    webhook_delivery_attempt(delivery_pk=old.pk)
    webhook_delivery_attempt(delivery_pk=recent.pk)
    WebhookDelivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))
    assert tasks.purge_merchant_webhook_log() == 1
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [recent.pk]
    assert WebhookDeliveryAttempt.objects.count() == 1
