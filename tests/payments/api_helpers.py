"""Helpers for merchant API tests: keys, JSON calls, a payment that succeeded."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

from accounts.api_keys import api_key_create
from payments.models import Payment
from tests.payments.helpers import latest_payment, new_session, pay


def key_for(tenant, *, scope: str = "write", mode: str = "test", name: str = "backend") -> str:
    """A fresh API key's full secret for the tenant's merchant."""
    return api_key_create(
        actor=tenant.owner, merchant=tenant.merchant, name=name, scope=scope, mode=mode
    ).secret


def call(
    method: str,
    path: str,
    *,
    key: str | None = None,
    body: Any = None,
    idem: str | None = None,
    client: Client | None = None,
    **query: Any,
):
    """An API request; ``body`` is sent as JSON; the answer's ``.json()`` works for every status."""
    client = client or Client()
    headers: dict[str, str] = {}
    if key:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    if idem is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = idem
    if method == "GET":
        return client.get(path, query, **headers)
    data = json.dumps(body) if body is not None else ""
    return client.generic(method, path, data, content_type="application/json", **headers)


def succeeded_payment(tenant, *, amount: int = 1000, email: str = "buyer@example.com") -> Payment:
    session = new_session(tenant, amount=amount, email=email)
    pay(Client(), session, "pm_card_visa")
    payment = latest_payment(session)
    assert payment.status == Payment.Status.SUCCEEDED
    return payment
