"""Shared pieces of the gateway adapter tests (``test_<gateway>_gateway.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from payments.gateways.base import GatewayError, GatewayPayment, PaymentGateway, PaymentRef, PaymentRequest

# What every gateway tells the user when its answer (an amount, say) cannot be read.
UNREADABLE = (
    "The payment provider's answer could not be read, so we could not confirm the outcome. "
    "Check the payment again in a few minutes."
)


def assert_unreadable(*errors: GatewayError) -> None:
    """Each error is the one for an answer that could not be read: worded as :data:`UNREADABLE`,
    a 502, and not offered as retryable (the call may have taken effect)."""
    for error in errors:
        assert error.message == UNREADABLE
        assert (error.code, error.status_code, error.retryable) == ("gateway_malformed_response", 502, False)


def ref_for(request: PaymentRequest, gateway_payment_id: str | None) -> PaymentRef:
    """The reference our services keep for ``request``'s payment at the gateway."""
    assert gateway_payment_id
    return PaymentRef(
        payment_id=request.payment_id,
        gateway_payment_id=gateway_payment_id,
        currency=request.currency,
        merchant_account=request.merchant_account,
    )


def pay_intent(
    gateway: PaymentGateway, request: PaymentRequest, payment_method: str, **kwargs
) -> GatewayPayment:
    """Create a PaymentIntent (Stripe, simulated) and confirm it with ``payment_method``."""
    created = gateway.create_payment(request)
    return gateway.confirm_payment(
        request, payment_method=payment_method, gateway_payment_id=created.gateway_payment_id, **kwargs
    )


def paid_ref(
    gateway: PaymentGateway, request: PaymentRequest, payment_method: str = "pm_card_visa"
) -> PaymentRef:
    """A payment the customer has paid (it succeeded with ``payment_method``), as its reference."""
    return ref_for(request, pay_intent(gateway, request, payment_method).gateway_payment_id)


def without(*fields: str) -> Callable[[dict[str, Any]], None]:
    """An edit that leaves ``fields`` out of a vendor's object (the fake's stored one, or
    :meth:`StripeFake.alter_next_answer`'s copy of an answer)."""

    def alter(obj: dict[str, Any]) -> None:
        for name in fields:
            del obj[name]

    return alter


def with_values(**fields: object) -> Callable[[dict[str, Any]], None]:
    """An edit that sets ``fields`` on a vendor's object (see :func:`without`)."""
    return lambda obj: obj.update(fields)
