"""Reads for a merchant's payments, always scoped to the merchant."""

from __future__ import annotations

from django.db.models import F, QuerySet, Sum

from accounts.models import Merchant
from payments.models import (
    CheckoutSession,
    Dispute,
    FraudRule,
    Payment,
    PaymentEvent,
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
    return PaymentEvent.objects.filter(payment=payment).order_by("recorded_at", "id")


def refunds_for_payment(payment: Payment) -> QuerySet[Refund]:
    return Refund.objects.filter(payment=payment).select_related("created_by").order_by("-created_at")


def payment_refund_available(payment: Payment) -> int:
    """What a refund may still take now: captured, less refunds that succeeded or are still pending.

    The same sum ``services.refund_create`` enforces, so the refund form never offers more than
    the service accepts.
    """
    totals = dict(
        Refund.objects.filter(payment=payment, status__in=[Refund.Status.SUCCEEDED, Refund.Status.PENDING])
        .values_list("status")
        .annotate(total=Sum("amount"))
        .values_list("status", "total")
    )
    succeeded = max(totals.get(Refund.Status.SUCCEEDED) or 0, payment.amount_refunded)
    return max(0, payment.amount_captured - succeeded - (totals.get(Refund.Status.PENDING) or 0))


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
