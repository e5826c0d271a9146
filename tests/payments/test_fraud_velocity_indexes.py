"""Velocity rules count from indexes, never by scanning a merchant's payments."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from payments.fraud_rules import Facts, velocity_queryset
from payments.models import Payment
from tests.payments.helpers import latest_payment, new_session, pay

pytestmark = pytest.mark.django_db


def plan(qs) -> str:
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE payments_payment")
        if connection.vendor == "postgresql":
            # A test table is small enough to read whole; ask which index answers when one must.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_bitmapscan = off")
    return qs.explain()


def busy_merchant(tenant, n: int = 600) -> None:
    """Many recent payments from many IPs and cards, as a merchant's table looks in real life."""
    now = timezone.now()
    Payment.objects.bulk_create(
        Payment(
            merchant=tenant.merchant,
            gateway="simulated",
            amount=1000 + i,
            currency="EUR",
            status=Payment.Status.SUCCEEDED,
            customer_ip=f"198.51.{i // 250}.{i % 250}",
            card_fingerprint=f"fp{i:06d}abc",
            created_at=now - timedelta(minutes=i % 120),
        )
        for i in range(n)
    )


@pytest.mark.parametrize(
    ("dimension", "index"),
    [("ip", "pay_merchant_ip_created"), ("card", "pay_merchant_card_created"), ("email", None)],
)
def test_each_velocity_dimension_is_answered_from_an_index(client, tenant, dimension, index):
    busy_merchant(tenant)
    session = new_session(tenant)
    pay(client, session, "pm_card_visa")
    payment = latest_payment(session)
    facts = Facts(
        merchant_id=tenant.merchant.pk,
        amount=100,
        currency="EUR",
        at=timezone.now(),
        customer_pk=payment.customer_id,
        ip="203.0.113.9",
        card_fingerprint=payment.card_fingerprint,
    )
    qs = velocity_queryset({"dimension": dimension, "window_minutes": 60}, facts)
    text = plan(qs)
    assert "Seq Scan" not in text and "SCAN payments_payment" not in text.replace("USING INDEX", ""), text
    assert "INDEX" in text.upper(), text
    if index:
        assert index in text, text
