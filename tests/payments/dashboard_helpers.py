"""Helpers for the dashboard tests: payments written straight to the table (for list shapes),
and small parsers for the payments list page."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from payments import services
from payments.models import Payment

BASE_TIME = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def make_payment(
    merchant,
    *,
    email: str | None = None,
    status: str = Payment.Status.SUCCEEDED,
    amount: int = 2500,
    currency: str = "EUR",
    created_at: datetime | None = None,
    **extra: Any,
) -> Payment:
    customer = services.customer_for_email(merchant=merchant, email=email) if email else None
    return Payment.objects.create(
        merchant=merchant,
        customer=customer,
        gateway=extra.pop("gateway", "simulated"),
        amount=amount,
        currency=currency,
        status=status,
        created_at=created_at or BASE_TIME,
        card_brand=extra.pop("card_brand", "visa"),
        card_last4=extra.pop("card_last4", "4242"),
        **extra,
    )


def make_many(merchant, n: int, *, start: datetime = BASE_TIME, step: timedelta = timedelta(minutes=1), **kw):
    return [make_payment(merchant, created_at=start - i * step, **kw) for i in range(n)]


def row_ids(body: str) -> list[str]:
    return re.findall(r'<tr data-payment="(pay_[A-Za-z0-9]+)"', body)


def link(body: str, rel: str) -> str | None:
    match = re.search(rf'href="([^"]+)" rel="{rel}"', body)
    return html.unescape(match.group(1)) if match else None
