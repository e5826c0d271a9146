"""Helpers for fraud-rule tests: add rules as a merchant would, pay from a given IP and country."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.test import Client

from payments import fraud_rules
from payments.models import CheckoutSession, FraudRule

CUSTOMER_IP = "203.0.113.9"


def add_rule(
    tenant, kind: str, action: str = "review", *, label: str | None = None, **parameters: Any
) -> FraudRule:
    return fraud_rules.fraud_rule_create(
        actor=tenant.owner,
        merchant=tenant.merchant,
        kind=kind,
        parameters=parameters,
        action=action,
        label=label or f"{kind} → {action}",
    )


def pay_from(
    client: Client,
    session: CheckoutSession,
    payment_method: str = "pm_card_visa",
    *,
    ip: str = CUSTOMER_IP,
    country: str | None = "US",
):
    """POST the checkout form as a customer at ``ip``, with the proxy's country header when given."""
    headers: dict[str, str] = {"REMOTE_ADDR": ip}
    if country is not None:
        headers["HTTP_CF_IPCOUNTRY"] = country
    return client.post(f"/pay/{session.public_id}/", {"payment_method": payment_method}, **headers)


def run_fraud_cancels(callbacks: list) -> int:
    """Run the on-commit callbacks that cancel blocked payments (and only those); returns how many."""
    ran = 0
    for callback in callbacks:
        if isinstance(callback, partial) and callback.func is fraud_rules.enqueue_cancel:
            callback()
            ran += 1
    return ran


def commit_data_keys(callbacks: list) -> None:
    """Run the on-commit callbacks that release new data keys to the key cache (and only those).

    Tests run inside one transaction, so keys created in them never count as committed;
    a real list page reads keys committed long before. Other callbacks (webhooks) are left.
    """
    for callback in callbacks:
        if getattr(callback, "__module__", "") == "security.crypto":
            callback()
