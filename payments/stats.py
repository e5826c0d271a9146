"""The daily rollup behind the overview charts (``PaymentDailyStat``): kept current, and rebuilt.

A payment counts once, on the UTC day it was created, under the outcome it is in
now (succeeded, failed with its decline code, or canceled); a payment still in
flight counts nowhere yet. A dispute counts on the day it was opened. So the
charts read a few dozen rows whatever the number of payments.

* :func:`payment_outcome_moved` is called by ``payments.services`` inside the
  transaction that changes a payment (one upsert per side of the move, so
  concurrent changes add up correctly).
* :func:`dispute_opened` likewise when a dispute is first recorded.
* :func:`stats_rebuild` recomputes a date range from the payments and disputes
  tables (``manage.py rebuild_payment_stats``, and the nightly beat task for the
  last few days, which repairs any drift).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db import connection, transaction
from django.db.models import Count, Sum
from django.db.models.functions import TruncDate

from payments.models import Dispute, Payment, PaymentDailyStat

Outcome = PaymentDailyStat.Outcome
COUNTED: dict[str, str] = {
    Payment.Status.SUCCEEDED: Outcome.SUCCEEDED,
    Payment.Status.FAILED: Outcome.FAILED,
    Payment.Status.CANCELED: Outcome.CANCELED,
}


def day_of(moment: dt.datetime) -> dt.date:
    return moment.astimezone(dt.UTC).date()


def _bump(
    *, merchant_id: int, day: dt.date, currency: str, outcome: str, decline_code: str, count: int, amount: int
) -> None:
    table = PaymentDailyStat._meta.db_table
    # INSERT ... ON CONFLICT DO UPDATE reads the same on PostgreSQL and SQLite (3.24+), and adds
    # atomically: two transactions counting into the same row both count.
    sql = (
        f"INSERT INTO {table} (merchant_id, day, currency, outcome, decline_code, count, amount) "  # noqa: S608
        "VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (merchant_id, day, currency, outcome, decline_code) DO UPDATE SET "
        f"count = {table}.count + excluded.count, amount = {table}.amount + excluded.amount"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [merchant_id, day, currency, outcome, decline_code[:64], count, amount])


def payment_outcome_moved(*, payment: Payment, previous_status: str, previous_decline_code: str) -> None:
    """Move ``payment`` from the bucket of its previous status to the bucket of its current one."""
    before = COUNTED.get(previous_status)
    after = COUNTED.get(payment.status)
    old_code = previous_decline_code if before == Outcome.FAILED else ""
    new_code = payment.decline_code if after == Outcome.FAILED else ""
    if (before, old_code) == (after, new_code):
        return
    merchant_id, day, currency = payment.merchant_id, day_of(payment.created_at), payment.currency
    if before is not None:
        _bump(
            merchant_id=merchant_id,
            day=day,
            currency=currency,
            outcome=before,
            decline_code=old_code,
            count=-1,
            amount=-payment.amount,
        )
    if after is not None:
        _bump(
            merchant_id=merchant_id,
            day=day,
            currency=currency,
            outcome=after,
            decline_code=new_code,
            count=1,
            amount=payment.amount,
        )


def dispute_opened(*, dispute: Dispute) -> None:
    _bump(
        merchant_id=dispute.merchant_id,
        day=day_of(dispute.created_at),
        currency=dispute.currency,
        outcome=Outcome.DISPUTE,
        decline_code="",
        count=1,
        amount=dispute.amount,
    )


def _day_bounds(first: dt.date, last: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(first, dt.time.min, tzinfo=dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    return start, end


def stats_rebuild(*, first: dt.date, last: dt.date, merchant_ids: Iterable[int] | None = None) -> int:
    """Recompute the rollup for the UTC days ``first``..``last`` (inclusive); returns rows written."""
    start, end = _day_bounds(first, last)
    ids = list(merchant_ids) if merchant_ids is not None else None
    payments = Payment.objects.filter(created_at__gte=start, created_at__lt=end, status__in=list(COUNTED))
    disputes = Dispute.objects.filter(created_at__gte=start, created_at__lt=end)
    existing = PaymentDailyStat.objects.filter(day__gte=first, day__lte=last)
    if ids is not None:
        payments = payments.filter(merchant_id__in=ids)
        disputes = disputes.filter(merchant_id__in=ids)
        existing = existing.filter(merchant_id__in=ids)
    rows: list[PaymentDailyStat] = []
    grouped = (
        payments.annotate(day=TruncDate("created_at", tzinfo=dt.UTC))
        .values("merchant_id", "day", "currency", "status", "decline_code")
        .annotate(n=Count("id"), total=Sum("amount"))
        .order_by()
    )
    merged: dict[tuple, list[int]] = {}
    for g in grouped.iterator():
        outcome = COUNTED[g["status"]]
        code = g["decline_code"] if outcome == Outcome.FAILED else ""
        key = (g["merchant_id"], g["day"], g["currency"], outcome, code)
        bucket = merged.setdefault(key, [0, 0])
        bucket[0] += g["n"]
        bucket[1] += g["total"] or 0
    for d in (
        disputes.annotate(day=TruncDate("created_at", tzinfo=dt.UTC))
        .values("merchant_id", "day", "currency")
        .annotate(n=Count("id"), total=Sum("amount"))
        .order_by()
        .iterator()
    ):
        merged[(d["merchant_id"], d["day"], d["currency"], Outcome.DISPUTE, "")] = [d["n"], d["total"] or 0]
    for (merchant_id, day, currency, outcome, code), (n, total) in merged.items():
        rows.append(
            PaymentDailyStat(
                merchant_id=merchant_id,
                day=day,
                currency=currency,
                outcome=outcome,
                decline_code=code,
                count=n,
                amount=total,
            )
        )
    with transaction.atomic():
        existing.delete()
        PaymentDailyStat.objects.bulk_create(rows, batch_size=1000)
    return len(rows)
