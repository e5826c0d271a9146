"""Fraud decisions for payments: before the card is charged, and again on the gateway's result.

``before_payment`` decides, from what is known when checkout opens (amount,
customer, IP), whether the payment may proceed (``allow``), must be held for
a person's review (``review``: authorised with manual capture, then captured
or canceled from the review queue) or is refused (``block``).
``after_gateway_result`` looks again once the gateway has answered (card,
Radar risk) and puts held payments into the review queue. The rules
themselves live in :mod:`payments.fraud_rules`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from accounts.models import Merchant


@dataclass(frozen=True)
class Decision:
    outcome: str  # "allow", "review" or "block"
    fired: list[dict[str, Any]] = field(default_factory=list)


ALLOW = Decision("allow")


def before_payment(
    *,
    merchant: Merchant,
    amount: int,
    currency: str,
    customer: Any,
    ip: str | None,
    ip_country: str = "",
) -> Decision:
    from payments import fraud_rules

    return fraud_rules.evaluate_before(
        merchant=merchant, amount=amount, currency=currency, customer=customer, ip=ip, ip_country=ip_country
    )


def after_gateway_result(*, payment: Any) -> None:
    """Called with the payment locked, inside the transaction that applied the gateway's result."""
    from payments import fraud_rules

    fraud_rules.evaluate_after(payment=payment)


def describe_fired(fired: list[dict[str, Any]]) -> str:
    """One line naming the rules that fired, for a payment's history."""
    from payments import fraud_rules

    return fraud_rules.summary(fired)
