"""``rebuild_payment_stats [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--days N] [--merchant mer_…]``.

Recomputes the overview charts' daily rollup from the payments and disputes
tables for a range of UTC days (default: the last 30 days), for every merchant
or one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import Merchant
from payments.stats import stats_rebuild


def _date(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"{name} must be a date like 2026-11-01 (got {value!r}).") from exc


class Command(BaseCommand):
    help = "Recompute the payments dashboard's daily rollup (charts) for a range of UTC days."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--from", dest="first", help="First UTC day (YYYY-MM-DD).")
        parser.add_argument("--to", dest="last", help="Last UTC day, inclusive (default: today).")
        parser.add_argument("--days", type=int, default=30, help="Without --from: this many days up to --to.")
        parser.add_argument("--merchant", help="Only this merchant (its public id).")

    def handle(self, *args: Any, **options: Any) -> None:
        today = timezone.now().astimezone(dt.UTC).date()
        last = _date(options["last"], "--to") if options["last"] else today
        if options["first"]:
            first = _date(options["first"], "--from")
        else:
            if options["days"] < 1:
                raise CommandError("--days must be at least 1.")
            first = last - dt.timedelta(days=options["days"] - 1)
        if first > last:
            raise CommandError("--from must be on or before --to.")
        merchant_ids = None
        if options["merchant"]:
            merchant = Merchant.objects.filter(public_id=options["merchant"]).first()
            if merchant is None:
                raise CommandError(f"No merchant {options['merchant']!r}.")
            merchant_ids = [merchant.pk]
        rows = stats_rebuild(first=first, last=last, merchant_ids=merchant_ids)
        self.stdout.write(f"Rebuilt the payment statistics from {first} to {last}: {rows} row(s).")
