#!/usr/bin/env python
"""Fraud rules on a busy merchant: time to judge a payment before the card and on the gateway's result.

200,000 payments over 30 days (20,000 IPs, 50,000 cards, 2,000 customers), plus a card-testing
burst (5,000 payments from one IP and one card in the last hour); one rule of every kind with
1,000-entry block-lists. Prints the median and p95 of each evaluation and the velocity plans.
The scratch database is named by BENCH_FRAUD_DB (default fp_bench_fraud_rules).
"""

from __future__ import annotations

import os
import random
import time
from datetime import timedelta

from _setup import setup
from _setup import timed as _timed

ROUNDS = 200
PAYMENTS = 200_000
BURST = 5_000


def timed(fn, rounds: int = ROUNDS) -> tuple[float, float]:
    return _timed(fn, rounds)


def main() -> None:
    vendor = setup(os.environ.get("BENCH_FRAUD_DB", "fp_bench_fraud_rules"))
    from django.db import connection, transaction
    from django.utils import timezone

    from accounts.models import Membership, Merchant, Role, User
    from payments import fraud_rules
    from payments.models import Customer, Payment

    rng = random.Random(4)  # noqa: S311 - benchmark data, not secrets
    merchant = Merchant.objects.create(
        display_name="Bench", legal_name="Bench Ltd", country="GB", status="active"
    )
    owner = User.objects.create_user("owner@bench.example.com", None)
    Membership.objects.create(user=owner, merchant=merchant, role=Role.OWNER)  # rules are an owner's to edit
    customers = [
        Customer.objects.create(merchant=merchant, email=f"c{i}@bench.example.com") for i in range(2_000)
    ]
    now = timezone.now()
    started = time.perf_counter()
    batch: list[Payment] = []

    def flush() -> None:
        Payment.objects.bulk_create(batch, batch_size=5_000)
        batch.clear()

    for i in range(PAYMENTS):
        batch.append(
            Payment(
                merchant=merchant,
                customer=customers[i % len(customers)],
                gateway="simulated",
                amount=rng.randint(500, 50_000),
                currency="EUR",
                status=Payment.Status.SUCCEEDED,
                attempts=1,
                customer_ip=f"10.{(i % 20_000) // 250}.{(i % 20_000) % 250}.1",
                card_fingerprint=f"fp{i % 50_000:08d}",
                card_bin=f"4{i % 100_000:05d}",
                created_at=now - timedelta(seconds=rng.randint(0, 30 * 86400)),
            )
        )
        if len(batch) >= 5_000:
            flush()
    for _ in range(BURST):
        batch.append(
            Payment(
                merchant=merchant,
                gateway="simulated",
                amount=100,
                currency="EUR",
                status=Payment.Status.FAILED,
                attempts=3,
                customer_ip="198.51.100.66",
                card_fingerprint="fpcardtester",
                created_at=now - timedelta(seconds=rng.randint(0, 3600)),
            )
        )
    flush()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE payments_payment")
    print(f"[{vendor}] {PAYMENTS + BURST:,} payments loaded in {time.perf_counter() - started:.0f} s")

    def rule(kind: str, action: str = "review", **parameters) -> None:
        fraud_rules.fraud_rule_create(
            actor=owner, merchant=merchant, kind=kind, parameters=parameters, action=action, label=kind
        )

    rule("max_amount", currency="EUR", amount=100_000)
    rule("velocity", dimension="email", measure="count", limit=20, window_minutes=1440)
    rule("velocity", dimension="ip", measure="count", limit=10, window_minutes=60)
    rule("velocity", dimension="ip", measure="sum", currency="EUR", limit=500_000, window_minutes=1440)
    rule("velocity", dimension="card", measure="count", limit=10, window_minutes=60)
    rule("block_email", "block", entries=[f"blocked{i}@bench.example.com" for i in range(1_000)])
    rule("block_ip", "block", entries=[f"172.{16 + i // 250}.{i % 250}.0/24" for i in range(1_000)])
    rule("block_card", "block", entries=[f"fpblocked{i:06d}" for i in range(1_000)])
    rule("block_bin", "block", entries=[f"{520000 + i}" for i in range(1_000)])
    rule("country_mismatch")
    rule("risk_level", min_level="highest")

    customer = customers[7]
    print(f"{'evaluation (11 rules)':<52}{'median ms':>10}{'p95 ms':>9}")

    def before(ip: str) -> None:
        fraud_rules.evaluate_before(merchant=merchant, amount=4_990, currency="EUR", customer=customer, ip=ip)

    for label, ip in [
        ("before the card, ordinary IP", "10.3.7.1"),
        ("before the card, card-testing IP", "198.51.100.66"),
    ]:
        decision = fraud_rules.evaluate_before(
            merchant=merchant, amount=4_990, currency="EUR", customer=customer, ip=ip
        )
        median, p95 = timed(lambda ip=ip: before(ip))
        print(f"{label:<52}{median:>10.2f}{p95:>9.2f}   outcome {decision.outcome}")

    ordinary = Payment.objects.filter(merchant=merchant, card_fingerprint="fp00000042").first()
    tester = Payment.objects.filter(merchant=merchant, card_fingerprint="fpcardtester").first()
    for label, payment in [
        ("on the gateway's result, ordinary card", ordinary),
        ("on the gateway's result, card tester", tester),
    ]:
        assert payment is not None
        payment.ip_country, payment.card_country = "GB", "US"
        payment.status = Payment.Status.SUCCEEDED

        def after(p: Payment = payment) -> None:
            with transaction.atomic():
                p.fraud_rules_fired, p.review_status, p.fraud_outcome = [], "", ""
                fraud_rules.evaluate_after(payment=p)
                transaction.set_rollback(True)

        median, p95 = timed(after)
        print(f"{label:<52}{median:>10.2f}{p95:>9.2f}")

    facts = fraud_rules.Facts(
        merchant_id=merchant.pk,
        amount=100,
        currency="EUR",
        at=now,
        customer_pk=customer.pk,
        ip="198.51.100.66",
        card_fingerprint="fpcardtester",
    )
    for dimension in ("email", "ip", "card"):
        qs = fraud_rules.velocity_queryset({"dimension": dimension, "window_minutes": 60}, facts)
        assert qs is not None
        plan = qs.order_by().values("pk").explain()
        first = plan.splitlines()[0] if vendor == "postgresql" else plan
        print(f"velocity per {dimension:<6} plan: {first.strip()}")


if __name__ == "__main__":
    main()
