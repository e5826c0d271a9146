"""Reads for a merchant's payments, always scoped to the merchant."""

from __future__ import annotations

from django.db.models import F, QuerySet

from accounts.models import Merchant
from payments.models import CheckoutSession, Dispute, FraudRule, Payment, PaymentEvent, Refund


def payments_for(merchant: Merchant) -> QuerySet[Payment]:
    return Payment.objects.filter(merchant=merchant).select_related("customer", "checkout_session")


def payment_for(merchant: Merchant, public_id: str) -> Payment | None:
    return payments_for(merchant).filter(public_id=public_id).first()


def payment_timeline(payment: Payment) -> QuerySet[PaymentEvent]:
    return PaymentEvent.objects.filter(payment=payment).order_by("recorded_at", "id")


def refunds_for_payment(payment: Payment) -> QuerySet[Refund]:
    return Refund.objects.filter(payment=payment).select_related("created_by").order_by("-created_at")


def disputes_for(merchant: Merchant) -> QuerySet[Dispute]:
    return Dispute.objects.filter(merchant=merchant).select_related("payment")


def checkout_sessions_for(merchant: Merchant) -> QuerySet[CheckoutSession]:
    return CheckoutSession.objects.filter(merchant=merchant)


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
