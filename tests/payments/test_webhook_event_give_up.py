"""Giving up on a stored gateway webhook: marked failed with its reason, unless already applied."""

from __future__ import annotations

import time

import pytest

from payments.models import WebhookEvent
from payments.services import webhook_apply, webhook_event_fail
from security.models import AuditEvent
from tests.payments.helpers import post_stripe_event
from tests.payments.test_webhook_fast_path import intent_for, started_payment

pytestmark = pytest.mark.django_db


def stored_event(client, tenant, event_id: str) -> WebhookEvent:
    payment = started_payment(client, tenant)
    post_stripe_event(
        client,
        "payment_intent.succeeded",
        intent_for(payment, "succeeded"),
        event_id=event_id,
        created=int(time.time()),
    )
    return WebhookEvent.objects.get(event_id=event_id)


def test_a_waiting_event_given_up_on_is_marked_failed_with_its_reason_and_audited(client, tenant):
    row = stored_event(client, tenant, "evt_give_up")

    assert webhook_event_fail(webhook_pk=row.pk, reason="The payment provider refused the request.")

    row.refresh_from_db()
    assert (row.status, row.last_error) == ("failed", "The payment provider refused the request.")
    assert AuditEvent.objects.filter(action="webhook_event.failed", target_id=row.public_id).count() == 1


def test_an_event_another_worker_applied_is_not_marked_failed(client, tenant):
    row = stored_event(client, tenant, "evt_applied_first")
    assert webhook_apply(webhook_pk=row.pk) == "applied"

    assert not webhook_event_fail(webhook_pk=row.pk, reason="too late")

    row.refresh_from_db()
    assert (row.status, row.last_error) == ("applied", "")
    assert not AuditEvent.objects.filter(action="webhook_event.failed").exists()
