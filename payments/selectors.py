"""Reads for a merchant's payments, always scoped to the merchant."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import Merchant
from payments.models import CheckoutSession, Dispute, Payment, PaymentEvent, Refund


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
