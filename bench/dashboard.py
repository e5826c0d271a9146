#!/usr/bin/env python
"""Merchant dashboard at a million payments: server time of the payments list, searches and the overview.

Seeds 1,000,000 payments for one merchant (plus 150,000 for three others) on a
scratch PostgreSQL database with ``INSERT ... SELECT generate_series``, 2,000
customers with encrypted emails, and 2,000 disputes; rebuilds the charts' daily
rollup; then times 20 requests of each page through Django's test client with a
signed-in, second-factor-verified owner, and prints the median and p95 in ms
(target: under 150 ms each) and the query plans of the list queries. The scratch
database is dropped at exit. Without PostgreSQL it says so and stops.
"""

from __future__ import annotations

import time

from _setup import django_on_scratch_db
from _setup import timed as _timed

ROUNDS = 20
MAIN_PAYMENTS = 1_000_000
OTHER_PAYMENTS = 50_000
CUSTOMERS = 2_000

SEED_SQL = """
INSERT INTO payments_payment (
    public_id, merchant_id, checkout_session_id, customer_id, gateway, mode, gateway_payment_id,
    merchant_account, amount, currency, description, status, capture_method, amount_captured,
    amount_refunded, amount_disputed, attempts, sca_mode, customer_ip, ip_country, card_brand,
    card_last4, card_country, card_fingerprint, card_bin, three_d_secure, decline_code,
    decline_message, risk_provider, risk_type, risk_level, risk_score, risk_reason, risk_rule,
    seller_message, early_fraud_warning, fraud_outcome, fraud_rules_fired, review_status,
    last_event_at, created_at, updated_at, succeeded_at
)
SELECT
    'pay_' || substr(md5(%(salt)s || i::text), 1, 24),
    %(merchant)s, NULL,
    CASE WHEN %(customers)s::bigint[] = '{}' THEN NULL
         ELSE (%(customers)s::bigint[])[1 + (i %% cardinality(%(customers)s::bigint[]))] END,
    CASE WHEN i %% 10 = 0 THEN 'braintree' ELSE 'stripe' END, 'live', NULL, '',
    100 + (hashint %% 99900),
    (ARRAY['EUR','EUR','EUR','EUR','EUR','EUR','GBP','GBP','USD','JPY'])[1 + (i %% 10)],
    'Order ' || i,
    s.status, 'automatic', 0, 0, 0, 1, 'automatic', NULL, '',
    (ARRAY['visa','mastercard','amex'])[1 + (i %% 3)], lpad((i %% 10000)::text, 4, '0'), 'GB', '', '', '',
    CASE WHEN s.status = 'failed'
         THEN (ARRAY['insufficient_funds','generic_decline','expired_card','incorrect_cvc'])[1 + (i %% 4)]
         ELSE '' END,
    '', '', '', '', NULL, '', '', '', false,
    CASE WHEN i %% 50 = 0 THEN 'review' WHEN i %% 97 = 0 THEN 'block' ELSE 'allow' END, '[]'::jsonb, '',
    NULL, %(now)s - i * (%(spacing)s * interval '1 second'), %(now)s, NULL
FROM generate_series(1, %(n)s) AS i,
     LATERAL (SELECT abs(hashtext(%(salt)s || i::text)) AS hashint) h,
     LATERAL (SELECT CASE
        WHEN hashint %% 100 < 80 THEN 'succeeded'
        WHEN hashint %% 100 < 92 THEN 'failed'
        WHEN hashint %% 100 < 95 THEN 'canceled'
        WHEN hashint %% 100 < 98 THEN 'requires_payment_method'
        ELSE 'processing' END AS status) s
"""

DISPUTES_SQL = """
INSERT INTO payments_dispute (public_id, merchant_id, payment_id, gateway, gateway_dispute_id, amount,
    currency, reason, status, evidence_due_by, last_event_at, created_at, closed_at)
SELECT 'dp_' || substr(md5(p.public_id), 1, 24), p.merchant_id, p.id, p.gateway, 'dp_bench_' || p.id,
    p.amount, p.currency, 'fraudulent',
    (ARRAY['needs_response','under_review','won','lost'])[1 + (p.id %% 4)],
    p.created_at + interval '10 days', NULL, p.created_at + interval '2 days', NULL
FROM payments_payment p
WHERE p.merchant_id = %(merchant)s AND p.status = 'succeeded' AND p.id %% 400 = 0
"""


def timed(fn, rounds: int = ROUNDS) -> tuple[float, float]:
    return _timed(fn, rounds)


def main() -> None:
    import os

    os.environ["CELERY_BROKER_URL"] = "memory://"
    os.environ["CELERY_RESULT_BACKEND"] = "cache+memory://"
    vendor = django_on_scratch_db("dashboard")
    if vendor != "postgresql":
        print("skipped: bench/dashboard.py needs PostgreSQL on 127.0.0.1:5432 (set BENCH_PG_ADMIN_URL)")
        return
    import datetime as dt

    from django.db import connection
    from django.test import Client
    from django.utils import timezone
    from django_otp import DEVICE_ID_SESSION_KEY

    from accounts.models import EncryptedTOTPDevice, Membership, Merchant, Role, User
    from payments.forms_dashboard import PaymentFilterForm
    from payments.models import Customer, Payment
    from payments.selectors import payments_filtered
    from payments.stats import stats_rebuild

    def merchant(name: str) -> Merchant:
        return Merchant.objects.create(
            display_name=name, legal_name=f"{name} Ltd", country="GB", status="active"
        )

    main_merchant = merchant("Bench")
    others = [merchant(f"Other {i}") for i in range(3)]
    owner = User.objects.create_user("owner@bench.example.com", "bench-password-123456")
    Membership.objects.create(user=owner, merchant=main_merchant, role=Role.OWNER)

    started = time.perf_counter()
    customers = Customer.objects.bulk_create(
        [Customer(merchant=main_merchant, email=f"customer{i}@bench.example.com") for i in range(CUSTOMERS)],
        batch_size=500,
    )
    customer_ids = [c.pk for c in customers]
    print(f"seeded {CUSTOMERS:,} customers (encrypted emails) in {time.perf_counter() - started:.1f} s")

    now = timezone.now()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            SEED_SQL,
            {
                "salt": "main",
                "merchant": main_merchant.pk,
                "customers": customer_ids,
                "now": now,
                "spacing": 30,  # a payment every 30 s: a million over ~347 days
                "n": MAIN_PAYMENTS,
            },
        )
        for i, other in enumerate(others):
            cursor.execute(
                SEED_SQL,
                {
                    "salt": f"other{i}",
                    "merchant": other.pk,
                    "customers": [],
                    "now": now,
                    "spacing": 600,
                    "n": OTHER_PAYMENTS,
                },
            )
        cursor.execute(DISPUTES_SQL, {"merchant": main_merchant.pk})
        cursor.execute("ANALYZE payments_payment; ANALYZE payments_dispute; ANALYZE payments_customer")
    total = Payment.objects.count()
    print(
        f"seeded {total:,} payments ({MAIN_PAYMENTS:,} for the measured merchant) in "
        f"{time.perf_counter() - started:.1f} s"
    )

    today = now.astimezone(dt.UTC).date()
    started = time.perf_counter()
    rows = stats_rebuild(first=today - dt.timedelta(days=400), last=today)
    print(
        f"rebuild_payment_stats over 400 days: {rows:,} rollup rows in {time.perf_counter() - started:.1f} s"
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE payments_paymentdailystat")

    device = EncryptedTOTPDevice.objects.create(user=owner, confirmed=True)
    client = Client()
    client.force_login(owner, backend="allauth.account.auth_backends.AuthenticationBackend")
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session["otp_verified_at"] = int(time.time())
    session.save()

    middle = (
        Payment.objects.filter(merchant=main_merchant)
        .order_by("-created_at", "-id")
        .values_list("public_id", flat=True)[MAIN_PAYMENTS // 2]
    )
    since = (today - dt.timedelta(days=90)).isoformat()
    filtered = f"status=succeeded&currency=EUR&amount_min=10.00&amount_max=500.00&created_from={since}"
    pages = [
        ("payments list, first page", "/payments/"),
        ("payments list, 500,000 deep", f"/payments/?after={middle}"),
        ("filtered: status+amount+dates", f"/payments/?{filtered}"),
        ("filtered: rare risk outcome", "/payments/?risk=block&currency=JPY"),
        ("filtered: narrow amount, EUR", "/payments/?amount_min=500.00&amount_max=500.05&currency=EUR"),
        ("filtered: narrow amount, any", "/payments/?amount_min=500.00&amount_max=500.05"),
        ("search: customer email", "/payments/?q=customer17@bench.example.com"),
        ("search: payment id", f"/payments/?q={middle}"),
        ("overview (charts)", "/"),
    ]
    print(f"{'page':<34}{'median ms':>11}{'p95 ms':>9}{'rows':>6}")
    for label, path in pages:
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        shown = str(response.content.decode().count("<tr data-payment=")) if "/payments/" in path else "-"
        median, p95 = timed(lambda p=path: client.get(p))
        flag = "" if p95 < 150 else "   (over the 150 ms target)"
        print(f"{label:<34}{median:>11.1f}{p95:>9.1f}{shown:>6}{flag}")

    print("query plans (EXPLAIN ANALYZE, first page of 51 rows):")
    for label, query in [
        ("list", ""),
        ("filtered", filtered),
        ("email", "q=customer17@bench.example.com"),
        ("narrow amount", "amount_min=500.00&amount_max=500.05&currency=EUR"),
        ("narrow, any", "amount_min=500.00&amount_max=500.05"),
    ]:
        from django.http import QueryDict

        form = PaymentFilterForm(QueryDict(query))
        assert form.is_valid(), form.errors
        qs = payments_filtered(main_merchant, form.filters()).order_by("-created_at", "-pk")[:51]
        plan = qs.explain(analyze=True).splitlines()
        scans = [line.strip() for line in plan if "Scan" in line]
        print(f"  {label:<14} {plan[-1].strip()}; {scans[0] if scans else plan[0].strip()}"[:220])


if __name__ == "__main__":
    main()
