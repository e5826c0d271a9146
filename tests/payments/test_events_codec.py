"""Stored webhooks keep the gateway's payload exactly, whatever keys its dicts hold.

Our encoding marks dates and our own classes with reserved keys; a gateway's dict that
happens to hold one of them (metadata can hold anything a merchant typed) must come back as
the same dict, and the event must still apply.
"""

from __future__ import annotations

import time

import pytest

from payments import events_codec
from payments.models import Payment, SimulatedIntent, WebhookEvent
from tests.payments.helpers import post_stripe_event, started_payments

pytestmark = pytest.mark.django_db


def test_a_payload_holding_our_reserved_keys_is_stored_as_sent_and_still_applies(
    client, tenant, django_capture_on_commit_callbacks
):
    (payment,) = started_payments(client, tenant, 1)
    intent = dict(SimulatedIntent.objects.get(intent_id=payment.gateway_payment_id).data["intent"])
    odd = {
        "shipping": {"__dt__": "not a date"},
        "metadata": {**intent.get("metadata", {}), "__dc__": "GatewayEvent", "__map__": "x"},
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = post_stripe_event(
            client,
            "payment_intent.processing",
            intent | {"status": "processing"} | odd,
            event_id="evt_reserved_keys",
            created=int(time.time()),
        )

    assert response.status_code == 200
    stored = WebhookEvent.objects.get(event_id="evt_reserved_keys")
    assert stored.status == WebhookEvent.Status.APPLIED
    payment.refresh_from_db()
    assert payment.status == Payment.Status.PROCESSING
    raw = events_codec.decode(stored.event).raw["data"]["object"]
    assert raw["shipping"] == {"__dt__": "not a date"}
    assert raw["metadata"]["__dc__"] == "GatewayEvent" and raw["metadata"]["__map__"] == "x"
