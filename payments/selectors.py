"""Reads for a merchant's payments, always scoped to the merchant."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import F, Q, QuerySet, Sum

from accounts.models import Merchant
from payments.forms_dashboard import AmountBound, PaymentFilters
from payments.keyset import keyset_anchor, keyset_rows
from payments.models import (
    CheckoutSession,
    Customer,
    Dispute,
    FraudRule,
    Payment,
    PaymentDailyStat,
    PaymentEvent,
    PaymentExport,
    Refund,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookEndpoint,
    WebhookEvent,
)


def payments_for(merchant: Merchant) -> QuerySet[Payment]:
    return Payment.objects.filter(merchant=merchant).select_related("customer", "checkout_session")


def payment_for(merchant: Merchant, public_id: str) -> Payment | None:
    return payments_for(merchant).filter(public_id=public_id).first()


def payment_timeline(payment: Payment) -> QuerySet[PaymentEvent]:
    return PaymentEvent.objects.filter(merchant_id=payment.merchant_id, payment=payment).order_by(
        "recorded_at", "id"
    )


def refunds_for_payment(payment: Payment) -> QuerySet[Refund]:
    return (
        Refund.objects.filter(merchant_id=payment.merchant_id, payment=payment)
        .select_related("created_by")
        .order_by("-created_at")
    )


def refunds_awaiting_confirmation(payment: Payment) -> QuerySet[Refund]:
    """The payment's refunds sent to the gateway whose answer was never read (pending, without
    the gateway's id): looked for at the gateway before another refund is sent."""
    return Refund.objects.filter(
        merchant_id=payment.merchant_id, payment=payment, status=Refund.Status.PENDING, gateway_refund_id=""
    ).order_by("created_at", "pk")


def payment_refund_totals(payment: Payment) -> tuple[int, int]:
    """The payment's refunded amounts: (succeeded, still pending)."""
    totals = dict(
        Refund.objects.filter(
            merchant_id=payment.merchant_id,
            payment=payment,
            status__in=[Refund.Status.SUCCEEDED, Refund.Status.PENDING],
        )
        .values_list("status")
        .annotate(total=Sum("amount"))
        .values_list("status", "total")
    )
    return totals.get(Refund.Status.SUCCEEDED) or 0, totals.get(Refund.Status.PENDING) or 0


def payment_refund_committed(payment: Payment, *, succeeded: int, pending: int) -> int:
    """How much of the captured amount refunds already take: those that succeeded (or the
    gateway's own running total, if larger) plus those still pending."""
    return max(succeeded, payment.amount_refunded) + pending


def payment_refund_available(payment: Payment) -> int:
    """What a refund may still take now: captured, less refunds that succeeded or are still pending.

    The same sum ``services.refund_create`` enforces, so the refund form never offers more than
    the service accepts.
    """
    succeeded, pending = payment_refund_totals(payment)
    committed = payment_refund_committed(payment, succeeded=succeeded, pending=pending)
    return max(0, payment.amount_captured - committed)


def disputes_for(merchant: Merchant) -> QuerySet[Dispute]:
    return Dispute.objects.filter(merchant=merchant).select_related("payment")


def checkout_sessions_for(merchant: Merchant) -> QuerySet[CheckoutSession]:
    return CheckoutSession.objects.filter(merchant=merchant).select_related("customer")


def disputes_open_for(merchant: Merchant) -> QuerySet[Dispute]:
    """Open disputes, the nearest evidence deadline first (those without one last)."""
    return (
        disputes_for(merchant)
        .filter(status__in=Dispute.OPEN_STATUSES)
        .order_by(F("evidence_due_by").asc(nulls_last=True), "-created_at", "-id")
    )


def disputes_closed_for(merchant: Merchant) -> QuerySet[Dispute]:
    """Won, lost and closed disputes, the most recently closed first."""
    return (
        disputes_for(merchant)
        .exclude(status__in=Dispute.OPEN_STATUSES)
        .order_by(F("closed_at").desc(nulls_last=True), "-created_at", "-id")
    )


def review_queue_for(merchant: Merchant) -> QuerySet[Payment]:
    """Payments waiting for a person's review, the oldest first."""
    return payments_for(merchant).filter(review_status=Payment.Review.PENDING).order_by("created_at", "id")


def fraud_rules_for(merchant: Merchant) -> QuerySet[FraudRule]:
    return FraudRule.objects.filter(merchant=merchant).select_related("created_by")


def fraud_rule_for(merchant: Merchant, public_id: str) -> FraudRule | None:
    return fraud_rules_for(merchant).filter(public_id=public_id).first()


def checkout_session_for(merchant: Merchant, public_id: str) -> CheckoutSession | None:
    return checkout_sessions_for(merchant).filter(public_id=public_id).first()


def refunds_for(merchant: Merchant) -> QuerySet[Refund]:
    return Refund.objects.filter(merchant=merchant).select_related("payment")


def refund_for(merchant: Merchant, public_id: str) -> Refund | None:
    return refunds_for(merchant).filter(public_id=public_id).first()


# --- Outgoing merchant webhooks ---------------------------------------------------------------


def webhook_endpoints_for(merchant: Merchant) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(merchant=merchant).order_by("-created_at", "-id")


def webhook_endpoint_for(merchant: Merchant, public_id: str) -> WebhookEndpoint | None:
    return webhook_endpoints_for(merchant).filter(public_id=public_id).first()


def webhook_deliveries_for(endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(endpoint=endpoint, merchant_id=endpoint.merchant_id).order_by(
        "-created_at", "-id"
    )


def webhook_delivery_for(endpoint: WebhookEndpoint, public_id: str) -> WebhookDelivery | None:
    return webhook_deliveries_for(endpoint).select_related("endpoint").filter(public_id=public_id).first()


def webhook_delivery_attempts(delivery: WebhookDelivery) -> QuerySet[WebhookDeliveryAttempt]:
    return WebhookDeliveryAttempt.objects.filter(delivery=delivery).order_by("-number")


def webhook_events_waiting(*, limit: int, newest_first: bool = False) -> list[int]:
    """Ids of stored gateway webhooks not yet tried (those that failed once retry on their own)."""
    qs = WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED, attempts=0)
    return list(qs.order_by("-pk" if newest_first else "pk").values_list("pk", flat=True)[:limit])


# --- Dashboard: the payments list, exports and the overview's rollup ----------------------------

LIST_PAGE_SIZE = 50


def _amount_q(low: AmountBound | None, high: AmountBound | None) -> Q:
    """Amount bounds typed in major units. With a currency: one range. Without: one range per
    currency exponent, each bound to its currencies, so an index on (merchant, amount) serves it."""
    from payments.money import CURRENCY_EXPONENTS

    def between(lo: int | None, hi: int | None) -> Q:
        q = Q()
        if lo is not None:
            q &= Q(amount__gte=lo)
        if hi is not None:
            q &= Q(amount__lte=hi)
        return q

    bound = low or high
    if bound is not None and bound.minor is not None:
        return between(low.minor if low else None, high.minor if high else None)
    combined = Q()
    for exp in sorted(set(CURRENCY_EXPONENTS.values())):
        codes = sorted(c for c, e in CURRENCY_EXPONENTS.items() if e == exp)
        lo = low.per_exponent[exp] if low else None
        hi = high.per_exponent[exp] if high else None
        combined |= Q(currency__in=codes) & between(lo, hi)
    return combined


def payments_filtered(merchant: Merchant, filters: PaymentFilters) -> QuerySet[Payment]:
    """The merchant's payments matching the list's filters (unordered; callers order by keyset)."""
    from security.blind_index import blind_index

    qs = payments_for(merchant)
    if filters.payment_id:
        qs = qs.filter(public_id=filters.payment_id)
    if filters.email:
        # Exact match through the blind index: no email is ever decrypted to search.
        qs = qs.filter(
            customer__in=Customer.objects.filter(
                merchant=merchant, email_bidx=blind_index("email", filters.email)
            ).values("pk")
        )
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.currency:
        qs = qs.filter(currency=filters.currency)
    if filters.gateway:
        qs = qs.filter(gateway=filters.gateway)
    if filters.risk:
        qs = qs.filter(fraud_outcome="" if filters.risk == "none" else filters.risk)
    if filters.created_from:
        qs = qs.filter(created_at__gte=dt.datetime.combine(filters.created_from, dt.time.min, tzinfo=dt.UTC))
    if filters.created_to:
        end = dt.datetime.combine(filters.created_to + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
        qs = qs.filter(created_at__lt=end)
    if filters.amount_min or filters.amount_max:
        qs = qs.filter(_amount_q(filters.amount_min, filters.amount_max))
    return qs


@dataclass
class PaymentPage:
    rows: list[Payment]
    next_cursor: str | None  # older payments: ?after=<id>
    previous_cursor: str | None  # newer payments: ?before=<id>


def payments_page(
    merchant: Merchant,
    filters: PaymentFilters,
    *,
    after: str = "",
    before: str = "",
    limit: int = LIST_PAGE_SIZE,
) -> PaymentPage:
    """One page of the filtered list, newest first, by keyset on ``(created_at, id)``.

    ``after``/``before`` are public ids of the last/first row of the page the user
    came from; an unknown id gives the first page. Costs the same at any depth.
    """
    from security.crypto import preload_keys

    filtered = payments_filtered(merchant, filters)
    cursor = after or before
    anchor = keyset_anchor(Payment.objects.filter(merchant=merchant), cursor) if cursor else None
    newer_side = bool(before) and not after  # ``after`` wins when both are sent
    rows, more = keyset_rows(filtered, anchor=anchor, before=newer_side, limit=limit)
    if newer_side and anchor is not None:
        older, newer = True, more
    else:
        older, newer = more, bool(after and anchor is not None)
    preload_keys([p.customer for p in rows if p.customer is not None])
    return PaymentPage(
        rows=rows,
        next_cursor=rows[-1].public_id if rows and older else None,
        previous_cursor=rows[0].public_id if rows and newer else None,
    )


def payments_for_export(merchant: Merchant, filters: PaymentFilters) -> QuerySet[Payment]:
    return payments_filtered(merchant, filters).order_by("-created_at", "-pk")


def payment_exports_for(merchant: Merchant) -> QuerySet[PaymentExport]:
    return PaymentExport.objects.filter(merchant=merchant).select_related("requested_by")


def payment_export_for(merchant: Merchant, public_id: str) -> PaymentExport | None:
    return payment_exports_for(merchant).filter(public_id=public_id).first()


def daily_stats_for(merchant: Merchant, *, first: dt.date, last: dt.date) -> list[PaymentDailyStat]:
    """The rollup rows of ``first``..``last`` (a few per day, whatever the number of payments)."""
    return list(
        PaymentDailyStat.objects.filter(merchant=merchant, day__gte=first, day__lte=last)
        .exclude(count=0)
        .order_by("day", "currency", "outcome", "decline_code")
    )


def disputes_at_risk(merchant: Merchant, *, statuses: tuple[str, ...]) -> list[dict[str, Any]]:
    """Money held in the open disputes of ``statuses``: one ``{"currency", "total"}`` per currency."""
    rows = (
        disputes_open_for(merchant)
        .filter(status__in=statuses)
        .order_by()
        .values("currency")
        .annotate(total=Sum("amount"))
        .order_by("currency")
    )
    return [dict(row) for row in rows]


def checkout_latest_payment(session: CheckoutSession) -> Payment | None:
    """The newest attempt to pay ``session`` (what its checkout pages show), if any."""
    return session.payments.order_by("-created_at").first()
