#!/usr/bin/env python
"""Merchant API and outgoing webhooks: list latency at any depth, idempotency cost, delivery rate.

* ``GET /api/v1/payments?limit=100`` on 20,000 payments: first page, a page 19,000 deep
  (cursor), and with a status filter. Keyset pagination should cost the same at any depth.
* ``POST /api/v1/checkout_sessions`` without and with ``Idempotency-Key``, and a replay.
* Recording webhook events (one endpoint) and delivering them to a local receiver, one worker.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

from _setup import django_on_scratch_db
from _setup import timed as _timed

ROUNDS = 100


def timed(fn, rounds: int = ROUNDS) -> tuple[float, float]:
    return _timed(fn, rounds)


def main() -> None:
    import os

    # Enqueued tasks stay in this process (no worker runs here; the rate is measured by calling them).
    os.environ["CELERY_BROKER_URL"] = "memory://"
    os.environ["CELERY_RESULT_BACKEND"] = "cache+memory://"
    vendor = django_on_scratch_db("merchant_api")
    from django.conf import settings
    from django.db import transaction
    from django.test import Client
    from django.utils import timezone

    from accounts.api_keys import api_key_create
    from accounts.models import Membership, Merchant, Role, User
    from payments import merchant_webhooks
    from payments.models import Payment, WebhookDelivery
    from tests.fakes.merchant_receiver import MerchantReceiver

    settings.API_RATE_LIMIT = "1000000/minute"
    merchant = Merchant.objects.create(
        display_name="Bench", legal_name="Bench Ltd", country="GB", status="active"
    )
    owner = User.objects.create_user("owner@bench.example.com", "bench-password-123456")
    Membership.objects.create(user=owner, merchant=merchant, role=Role.OWNER)
    key = api_key_create(actor=owner, merchant=merchant, name="bench", scope="write").secret
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}

    now = timezone.now()
    statuses = ["succeeded"] * 8 + ["failed", "canceled"]
    Payment.objects.bulk_create(
        [
            Payment(
                merchant=merchant,
                gateway="simulated",
                amount=1000 + i,
                currency="EUR",
                status=statuses[i % 10],
                amount_captured=1000 + i if statuses[i % 10] == "succeeded" else 0,
                created_at=now - timedelta(seconds=20_000 - i),
            )
            for i in range(20_000)
        ],
        batch_size=2000,
    )
    if vendor == "postgresql":
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("ANALYZE payments_payment")  # what autovacuum does after a bulk load
    deep = Payment.objects.order_by("created_at", "id").values_list("public_id", flat=True)[1000]
    client = Client()
    print(f"database: {vendor}")
    print(f"{'request':<52}{'median ms':>10}{'p95 ms':>9}")
    for label, query in [
        ("GET /payments limit=100 (first page)", {"limit": 100}),
        ("GET /payments limit=100 (19,000 deep, cursor)", {"limit": 100, "starting_after": deep}),
        ("GET /payments limit=100 status=failed", {"limit": 100, "status": "failed"}),
    ]:
        assert client.get("/api/v1/payments", query, **auth).status_code == 200
        median, p95 = timed(lambda q=query: client.get("/api/v1/payments", q, **auth))
        print(f"{label:<52}{median:>10.2f}{p95:>9.2f}")

    body = json.dumps({"amount": 4990, "currency": "EUR"})
    counter = iter(range(10**9))

    def post(idem: str | None) -> None:
        headers = {**auth, **({"HTTP_IDEMPOTENCY_KEY": idem} if idem else {})}
        response = client.post("/api/v1/checkout_sessions", body, content_type="application/json", **headers)
        assert response.status_code == 201, response.content

    for label, fn in [
        ("POST /checkout_sessions", lambda: post(None)),
        ("POST /checkout_sessions with a new Idempotency-Key", lambda: post(f"k{next(counter)}")),
        ("POST /checkout_sessions replayed (same key and body)", lambda: post("replayed")),
    ]:
        median, p95 = timed(fn)
        print(f"{label:<52}{median:>10.2f}{p95:>9.2f}")

    # Webhooks: the receiver is on 127.0.0.1, reached under outbound's test-only loopback switch.
    settings.OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS = True
    receiver = MerchantReceiver().start()
    try:
        merchant_webhooks.webhook_endpoint_create(actor=owner, merchant=merchant, url=f"{receiver.url}/hooks")
        payment = Payment.objects.filter(merchant=merchant).first()
        n = 500
        started = time.perf_counter()
        for _ in range(n):
            with transaction.atomic():
                merchant_webhooks.event_emit(
                    merchant_id=merchant.pk,
                    event_type="payment.succeeded",
                    build_object=lambda: merchant_webhooks._payment_object(payment),
                    livemode=False,
                )
        emit_ms = (time.perf_counter() - started) * 1000 / n
        pending = list(WebhookDelivery.objects.values_list("pk", flat=True))
        started = time.perf_counter()
        for pk in pending:
            merchant_webhooks.webhook_delivery_attempt(delivery_pk=pk)
        elapsed = time.perf_counter() - started
        assert WebhookDelivery.objects.filter(status="succeeded").count() == n
        print(f"{'record a webhook event (1 endpoint) and enqueue it':<52}{emit_ms:>10.2f}")
        print(
            f"{'deliver (sign, POST, log) per delivery, 1 worker':<52}{elapsed * 1000 / n:>10.2f}"
            f"   ({n / elapsed:,.0f} deliveries/s)"
        )
    finally:
        receiver.stop()


if __name__ == "__main__":
    main()
