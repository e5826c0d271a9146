"""The merchant's fraud rules. (Rule kinds are configured per merchant; see ``FraudRule``.)"""

from __future__ import annotations

from typing import Any

from accounts.models import Merchant
from payments.fraud import ALLOW, Decision


def evaluate_before(
    *, merchant: Merchant, amount: int, currency: str, customer: Any, ip: str | None
) -> Decision:
    return ALLOW


def evaluate_after(*, payment: Any) -> None:
    """Held payments (manual capture after a ``review`` decision) join the review queue once authorised."""
    from payments.models import Payment

    if (
        payment.status == Payment.Status.REQUIRES_CAPTURE
        and payment.fraud_outcome == Payment.FraudOutcome.REVIEW
        and payment.review_status == ""
    ):
        payment.review_status = Payment.Review.PENDING
        payment.save(update_fields=["review_status", "updated_at"])
