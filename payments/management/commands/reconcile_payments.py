"""``reconcile_payments --since 2d``: re-fetch payments stuck in processing or requires_action,
and settle refunds still pending (among them refunds whose gateway answer was lost)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from payments.services import payments_reconcile, refunds_reconcile

UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d{1,4})\s*([mhdw])\s*", value or "")
    if not match:
        raise CommandError(f"--since must look like 30m, 12h, 2d or 1w (got {value!r}).")
    amount = int(match.group(1))
    if amount <= 0:
        raise CommandError("--since must be more than zero.")
    return timedelta(**{UNITS[match.group(2)]: amount})


class Command(BaseCommand):
    help = (
        "Re-fetch payments stuck in processing or requires_action from their gateway and fix their state; "
        "settle pending refunds from the gateway's record of them."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--since", default="2d", help="How far back to look, e.g. 30m, 12h, 2d, 1w (default 2d)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        since = parse_since(options["since"])
        counts = payments_reconcile(since=since)
        self.stdout.write(
            f"Checked {counts['checked']} stuck payment(s): {counts['changed']} changed, "
            f"{counts['errors']} could not be reached."
        )
        refunds = refunds_reconcile(since=since)
        self.stdout.write(
            f"Checked {refunds['checked']} pending refund(s): {refunds['settled']} settled, "
            f"{refunds['errors']} could not be reached."
        )
        if counts["errors"]:
            raise CommandError(f"{counts['errors']} payment(s) could not be fetched; run again later.")
        if refunds["errors"]:
            raise CommandError(f"{refunds['errors']} refund(s) could not be looked up; run again later.")
