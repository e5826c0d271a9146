"""The simulated gateway: Stripe's test mode, offline, and the default with no keys set.

It is driven by Stripe's test PaymentMethod ids (``pm_card_visa``,
``pm_card_chargeDeclinedInsufficientFunds``, ``pm_card_threeDSecure2Required``,
``pm_card_radarBlock``...) and keeps Stripe-shaped PaymentIntents, charges and
refunds in one table, :class:`payments.models.SimulatedIntent`, so a web
process and a worker see the same state.

Its results go through the same normalisers as the Stripe adapter, and its
webhooks are Stripe-shaped events signed with Stripe's scheme
(``t=...,v1=HMAC-SHA256(secret, "<t>.<payload>")``) using the first
``STRIPE_WEBHOOK_SECRET`` (or a per-deployment development secret), so a task
can POST them to ``/webhooks/stripe/`` and the production verification path
(:func:`payments.gateways.stripe.parse_stripe_webhook`) accepts them. Simulated
ids carry a ``_sim_`` infix (``pi_sim_...``, ``evt_sim_...``), which no real
Stripe id has, so such events are labelled ``gateway="simulated"``.

3D Secure: a payment that needs a challenge goes to ``requires_action`` with a
``redirect_to_url`` next action pointing at our own challenge page
(:data:`CHALLENGE_PATH`); that page calls :meth:`SimulatedGateway.complete_challenge`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from payments.gateways import stripe as stripe_shapes
from payments.gateways.base import (
    ClientConfig,
    GatewayError,
    GatewayEvent,
    GatewayPayment,
    GatewayRefund,
    PaymentRef,
    PaymentRequest,
    check_refund_amount,
    known_error,
)
from payments.models import SimulatedIntent

NAME = "simulated"
CHALLENGE_PATH = "/checkout/simulated/3ds/{intent_id}/"
API_VERSION = "2026-10-28.endive"
_ALPHABET = string.ascii_letters + string.digits


def _new_id(prefix: str) -> str:
    return f"{prefix}_sim_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


@dataclass(frozen=True)
class SimulatedCard:
    brand: str
    last4: str
    country: str = "US"
    funding: str = "credit"
    code: str | None = None  # Stripe error code when declined
    decline_code: str | None = None
    three_d_secure: str = "supported"  # required, supported, not_supported
    risk_level: str = "normal"
    risk_score: int = 17
    outcome_type: str = "authorized"
    outcome_reason: str | None = None
    network_status: str = "approved_by_network"
    seller_message: str = "Payment complete."
    iin: str = "400000"  # the first six digits of Stripe's test card number


def _declined(last4: str, code: str, decline_code: str) -> SimulatedCard:
    return SimulatedCard(
        "visa",
        last4,
        code=code,
        decline_code=decline_code,
        outcome_type="issuer_declined",
        outcome_reason=decline_code,
        network_status="declined_by_network",
        seller_message=f"The bank returned the decline code `{decline_code}`.",
    )


_RADAR_BLOCK = SimulatedCard(
    "visa",
    "0019",
    code="card_declined",
    decline_code="fraudulent",
    risk_level="highest",
    risk_score=95,
    outcome_type="blocked",
    outcome_reason="highest_risk_level",
    network_status="not_sent_to_network",
    seller_message="Stripe blocked this payment as too risky.",
)

# Stripe's test PaymentMethods (https://docs.stripe.com/testing) and what they do.
CARDS: dict[str, SimulatedCard] = {
    "pm_card_visa": SimulatedCard("visa", "4242", iin="424242"),
    "pm_card_mastercard": SimulatedCard("mastercard", "4444", iin="555555"),
    "pm_card_chargeDeclined": _declined("0002", "card_declined", "generic_decline"),
    "pm_card_chargeDeclinedExpiredCard": _declined("0069", "expired_card", "expired_card"),
    "pm_card_chargeDeclinedInsufficientFunds": _declined("9995", "card_declined", "insufficient_funds"),
    "pm_card_chargeDeclinedIncorrectCvc": _declined("0127", "incorrect_cvc", "incorrect_cvc"),
    "pm_card_chargeDeclinedProcessingError": _declined("0119", "processing_error", "processing_error"),
    "pm_card_threeDSecure2Required": SimulatedCard("visa", "3220", three_d_secure="required"),
    "pm_card_radarBlock": _RADAR_BLOCK,
    "pm_card_riskLevelElevated": SimulatedCard("visa", "9235", risk_level="elevated", risk_score=65),
}

# Stripe's PaymentIntent life cycle, as far as the simulation goes.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    "requires_payment_method": frozenset(
        {"requires_payment_method", "requires_action", "requires_capture", "succeeded", "canceled"}
    ),
    "requires_action": frozenset({"requires_payment_method", "requires_capture", "succeeded", "canceled"}),
    "requires_capture": frozenset({"succeeded", "canceled"}),
    "succeeded": frozenset(),
    "canceled": frozenset(),
}

_EVENT_FOR_STATUS = {
    "succeeded": "payment_intent.succeeded",
    "failed": "payment_intent.payment_failed",
    "requires_action": "payment_intent.requires_action",
    "canceled": "payment_intent.canceled",
    "processing": "payment_intent.processing",
    "requires_capture": "payment_intent.amount_capturable_updated",
    "requires_payment_method": "payment_intent.created",
}


def sign_payload(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """Stripe's ``Stripe-Signature`` value: ``t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<payload>")>``."""
    ts = int(time.time() if timestamp is None else timestamp)
    digest = hmac.new(secret.encode("utf-8"), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def build_signed_event(
    event_type: str,
    data_object: Mapping[str, Any],
    *,
    secret: str,
    event_id: str | None = None,
    created: int | None = None,
    account: str | None = None,
    timestamp: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A Stripe-shaped event for ``data_object``, serialised and signed like Stripe's.

    Returns ``(body, headers)`` ready to POST to ``/webhooks/stripe/``; the
    headers are ``Content-Type`` and ``Stripe-Signature``.
    """
    if not secret:
        raise ValueError("a webhook secret is required to sign events")
    now = int(time.time())
    event: dict[str, Any] = {
        "id": event_id or _new_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": int(created if created is not None else now),
        "data": {"object": dict(data_object)},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    if account:
        event["account"] = account
    body = stripe_shapes.event_json(event)
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": sign_payload(body, secret, timestamp=timestamp),
    }
    return body, headers


def _error(message: str, code: str, status: int = 400) -> GatewayError:
    return GatewayError(message, gateway=NAME, code=code, status_code=status)


class SimulatedGateway:
    """The :class:`~payments.gateways.base.PaymentGateway` that imitates Stripe's test mode."""

    name = NAME

    def __init__(
        self,
        *,
        webhook_secrets: Sequence[str],
        site_url: str = "http://127.0.0.1:8000",
        webhook_tolerance: int = stripe_shapes.DEFAULT_TOLERANCE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.webhook_secrets = stripe_shapes.split_secrets(webhook_secrets)
        if not self.webhook_secrets:
            raise ValueError("SimulatedGateway needs a webhook secret to sign its events")
        self.site_url = site_url.rstrip("/")
        self.webhook_tolerance = webhook_tolerance
        self._clock = clock

    def __repr__(self) -> str:
        return "<SimulatedGateway>"

    # --- storage ---

    def _locked(self, intent_id: str, account: str | None) -> SimulatedIntent:
        try:
            return SimulatedIntent.objects.select_for_update().get(
                intent_id=intent_id, merchant_account=account or ""
            )
        except SimulatedIntent.DoesNotExist:
            raise known_error("not_found", gateway=NAME) from None

    def _find(self, intent_id: str, account: str | None) -> SimulatedIntent | None:
        return SimulatedIntent.objects.filter(intent_id=intent_id, merchant_account=account or "").first()

    def _payment(self, row: SimulatedIntent) -> GatewayPayment:
        intent = dict(row.data["intent"])
        if row.data.get("charge"):
            intent["latest_charge"] = row.data["charge"]
        return stripe_shapes.payment_from_intent(
            intent, gateway=self.name, merchant_account=row.merchant_account or None
        )

    def _save(self, row: SimulatedIntent, new_status: str) -> None:
        old = row.status
        if old != new_status and new_status not in ALLOWED_TRANSITIONS.get(old, frozenset()):
            raise known_error("illegal_transition", gateway=NAME)
        row.status = new_status
        row.data["intent"]["status"] = new_status
        row.version += 1
        row.save(update_fields=["status", "data", "version", "updated_at"])

    def _remember_key(self, row: SimulatedIntent, key: str, fingerprint: str) -> bool:
        """True when ``key`` was already used with these parameters (a replay); raises on misuse."""
        keys = row.data.setdefault("keys", {})
        if key in keys:
            if keys[key] != fingerprint:
                raise known_error("idempotency_conflict", gateway=NAME)
            return True
        keys[key] = fingerprint
        return False

    # --- protocol ---

    def create_payment(self, request: PaymentRequest) -> GatewayPayment:
        key = f"{request.payment_id}:create"
        existing = SimulatedIntent.objects.filter(idempotency_key=key).first()
        if existing is None:
            intent_id = _new_id("pi")
            now = int(self._clock())
            intent = {
                "id": intent_id,
                "object": "payment_intent",
                "amount": request.amount,
                "amount_capturable": 0,
                "amount_received": 0,
                "automatic_payment_methods": {"enabled": True, "allow_redirects": "always"},
                "canceled_at": None,
                "cancellation_reason": None,
                "capture_method": request.capture_method,
                "client_secret": f"{intent_id}_secret_{secrets.token_urlsafe(18)}",
                "confirmation_method": "automatic",
                "created": now,
                "currency": request.currency.lower(),
                "description": request.description or None,
                "last_payment_error": None,
                "latest_charge": None,
                "livemode": False,
                "metadata": {"payment_id": request.payment_id},
                "next_action": None,
                "payment_method": None,
                "payment_method_options": {"card": {"request_three_d_secure": request.sca_mode}},
                "payment_method_types": ["card"],
                "receipt_email": request.customer_email,
                "status": "requires_payment_method",
            }
            try:
                with transaction.atomic():
                    existing = SimulatedIntent.objects.create(
                        intent_id=intent_id,
                        idempotency_key=key,
                        merchant_account=request.merchant_account or "",
                        status="requires_payment_method",
                        amount=request.amount,
                        currency=request.currency,
                        data={"intent": intent, "charge": None, "refunds": [], "keys": {}},
                    )
            except IntegrityError:
                # Another process created it first: same key, same intent.
                existing = SimulatedIntent.objects.get(idempotency_key=key)
        same = (existing.amount, existing.currency, existing.merchant_account) == (
            request.amount,
            request.currency,
            request.merchant_account or "",
        )
        if not same:
            raise known_error("idempotency_conflict", gateway=NAME)
        return self._payment(existing)

    def client_config(self, request: PaymentRequest, payment: GatewayPayment) -> ClientConfig:
        return ClientConfig(
            gateway=self.name,
            client_secret=payment.client_secret,
            simulated=True,
            options={
                "sca_mode": request.sca_mode,
                "test_payment_methods": sorted(CARDS),
            },
        )

    def confirm_payment(
        self,
        request: PaymentRequest,
        *,
        payment_method: str,
        gateway_payment_id: str | None = None,
        attempt: int = 1,
        return_url: str | None = None,
        device_data: str | None = None,
    ) -> GatewayPayment:
        if not gateway_payment_id:
            gateway_payment_id = self.create_payment(request).gateway_payment_id
        assert gateway_payment_id
        card = CARDS.get(payment_method)
        if card is None:
            raise _error(
                "That test card is not known to the simulated gateway. Use one of Stripe's test "
                "PaymentMethods, such as pm_card_visa.",
                "invalid_payment_method",
            )
        with transaction.atomic():
            row = self._locked(gateway_payment_id, request.merchant_account)
            if self._remember_key(row, f"{request.payment_id}:confirm:{attempt}", payment_method):
                return self._payment(row)
            if row.status != "requires_payment_method":
                raise _error(
                    f"This payment cannot be confirmed while it is {row.status}.", "illegal_transition", 409
                )
            intent = row.data["intent"]
            intent.update(payment_method=payment_method, last_payment_error=None, next_action=None)
            request_3ds = intent["payment_method_options"]["card"]["request_three_d_secure"]
            if card.three_d_secure == "required" or (
                request_3ds == "any" and card.three_d_secure == "supported"
            ):
                intent["next_action"] = {
                    "type": "redirect_to_url",
                    "redirect_to_url": {
                        "url": self.site_url + CHALLENGE_PATH.format(intent_id=row.intent_id),
                        "return_url": return_url,
                    },
                }
                self._save(row, "requires_action")
                return self._payment(row)
            self._charge(row, card, three_d_secure=None)
            return self._payment(row)

    def complete_challenge(
        self, gateway_payment_id: str, *, approve: bool, merchant_account: str | None = None
    ) -> GatewayPayment:
        """The customer passed (``approve=True``) or failed the simulated 3D Secure challenge."""
        with transaction.atomic():
            row = self._locked(gateway_payment_id, merchant_account)
            if row.status != "requires_action":
                raise _error("This payment is not waiting for authentication.", "illegal_transition", 409)
            intent = row.data["intent"]
            intent["next_action"] = None
            if approve:
                self._charge(row, CARDS[intent["payment_method"]], three_d_secure="authenticated")
            else:
                intent["payment_method"] = None
                intent["last_payment_error"] = {
                    "type": "invalid_request_error",
                    "code": "payment_intent_authentication_failure",
                    "message": "The provided PaymentMethod has failed authentication.",
                }
                self._save(row, "requires_payment_method")
            return self._payment(row)

    def _charge(self, row: SimulatedIntent, card: SimulatedCard, *, three_d_secure: str | None) -> None:
        intent = row.data["intent"]
        failed = card.code is not None
        manual = intent["capture_method"] == "manual"
        charge_id = _new_id("ch")
        row.data["charge"] = {
            "id": charge_id,
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": 0 if failed or manual else intent["amount"],
            "amount_refunded": 0,
            "captured": not failed and not manual,
            "created": int(self._clock()),
            "currency": intent["currency"],
            "failure_code": card.code if failed else None,
            "livemode": False,
            "metadata": dict(intent["metadata"]),
            "outcome": {
                "network_status": card.network_status,
                "reason": card.outcome_reason,
                "risk_level": card.risk_level,
                "risk_score": card.risk_score,
                "rule": "rule_sim_block_highest_risk" if card.outcome_type == "blocked" else None,
                "seller_message": card.seller_message,
                "type": card.outcome_type,
            },
            "paid": not failed,
            "payment_intent": intent["id"],
            "payment_method": intent["payment_method"],
            "payment_method_details": {
                "type": "card",
                "card": {
                    "brand": card.brand,
                    "country": card.country,
                    "exp_month": 12,
                    "exp_year": 2034,
                    "fingerprint": hashlib.sha256(f"sim:{card.brand}:{card.last4}".encode()).hexdigest()[:16],
                    "funding": card.funding,
                    "iin": card.iin,
                    "last4": card.last4,
                    "three_d_secure": {"result": three_d_secure, "version": "2.2.0"}
                    if three_d_secure
                    else None,
                },
            },
            "refunded": False,
            "status": "failed" if failed else "succeeded",
        }
        intent["latest_charge"] = charge_id
        if failed:
            intent["last_payment_error"] = {
                "type": "card_error",
                "code": card.code,
                "decline_code": card.decline_code,
                "charge": charge_id,
            }
            self._save(row, "requires_payment_method")
        elif manual:
            intent["amount_capturable"] = intent["amount"]
            self._save(row, "requires_capture")
        else:
            intent["amount_received"] = intent["amount"]
            self._save(row, "succeeded")

    def capture_payment(self, ref: PaymentRef, *, amount: int | None = None) -> GatewayPayment:
        with transaction.atomic():
            row = self._locked(ref.gateway_payment_id, ref.merchant_account)
            if self._remember_key(row, f"{ref.payment_id}:capture", str(amount)):
                return self._payment(row)
            if row.status != "requires_capture":
                raise _error("Only an authorised payment can be captured.", "illegal_transition", 409)
            intent, charge = row.data["intent"], row.data["charge"]
            to_capture = intent["amount_capturable"] if amount is None else amount
            if to_capture <= 0 or to_capture > intent["amount_capturable"]:
                raise _error("The amount to capture is more than was authorised.", "capture_too_large")
            charge.update(
                captured=True, amount_captured=to_capture, amount_refunded=intent["amount"] - to_capture
            )
            intent.update(amount_received=to_capture, amount_capturable=0)
            self._save(row, "succeeded")
            return self._payment(row)

    def cancel_payment(self, ref: PaymentRef) -> GatewayPayment:
        with transaction.atomic():
            row = self._locked(ref.gateway_payment_id, ref.merchant_account)
            if self._remember_key(row, f"{ref.payment_id}:cancel", ""):
                return self._payment(row)
            if row.status in ("succeeded", "canceled"):
                raise known_error("cannot_cancel", gateway=NAME)
            row.data["intent"].update(
                canceled_at=int(self._clock()),
                cancellation_reason="requested_by_customer",
                amount_capturable=0,
                next_action=None,
            )
            self._save(row, "canceled")
            return self._payment(row)

    def refund_payment(
        self,
        ref: PaymentRef,
        *,
        refund_id: str,
        amount: int | None = None,
        reason: str | None = None,
    ) -> GatewayRefund:
        check_refund_amount(amount, gateway=self.name)
        with transaction.atomic():
            row = self._locked(ref.gateway_payment_id, ref.merchant_account)
            for existing in row.data["refunds"]:
                if existing["metadata"].get("refund_id") == refund_id:
                    if amount is not None and existing["amount"] != amount:
                        raise _error(
                            "This request conflicts with an earlier one for the same refund.",
                            "idempotency_conflict",
                            409,
                        )
                    return stripe_shapes.refund_from_stripe(existing, gateway=self.name)
            charge = row.data.get("charge")
            if row.status != "succeeded" or not charge or not charge.get("captured"):
                raise _error("Only a succeeded payment can be refunded.", "illegal_transition", 409)
            remaining = charge["amount_captured"] - charge["amount_refunded"]
            if remaining <= 0:
                raise known_error("already_refunded", gateway=NAME)
            value = remaining if amount is None else amount
            if value > remaining:
                raise known_error("refund_too_large", gateway=NAME)
            refund = {
                "id": _new_id("re"),
                "object": "refund",
                "amount": value,
                "charge": charge["id"],
                "created": int(self._clock()),
                "currency": charge["currency"],
                "failure_reason": None,
                "metadata": {"refund_id": refund_id, "payment_id": ref.payment_id},
                "payment_intent": row.intent_id,
                "reason": reason if reason in ("duplicate", "fraudulent", "requested_by_customer") else None,
                "status": "succeeded",
            }
            row.data["refunds"].append(refund)
            charge["amount_refunded"] += value
            charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
            row.version += 1
            row.save(update_fields=["data", "version", "updated_at"])
            return stripe_shapes.refund_from_stripe(refund, gateway=self.name)

    def fetch_payment(self, ref: PaymentRef) -> GatewayPayment:
        row = self._find(ref.gateway_payment_id, ref.merchant_account)
        if row is None:
            raise known_error("not_found", gateway=NAME)
        return self._payment(row)

    def find_payment(
        self, request: PaymentRequest, *, gateway_payment_id: str | None
    ) -> GatewayPayment | None:
        row = self._find(gateway_payment_id, request.merchant_account) if gateway_payment_id else None
        return self._payment(row) if row is not None else None

    def _refunds(self, ref: PaymentRef) -> list[dict[str, Any]]:
        row = self._find(ref.gateway_payment_id, ref.merchant_account)
        if row is None:
            raise known_error("not_found", gateway=NAME)
        return list(row.data["refunds"])

    def fetch_refund(self, ref: PaymentRef, gateway_refund_id: str) -> GatewayRefund:
        for refund in self._refunds(ref):
            if refund["id"] == gateway_refund_id:
                return stripe_shapes.refund_from_stripe(refund, gateway=self.name)
        raise _error("The payment provider has no record of this refund.", "not_found", 404)

    def find_refund(self, ref: PaymentRef, *, refund_id: str) -> GatewayRefund | None:
        for refund in self._refunds(ref):
            if refund["metadata"].get("refund_id") == refund_id:
                return stripe_shapes.refund_from_stripe(refund, gateway=self.name)
        return None

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        return stripe_shapes.parse_stripe_webhook(
            body, headers, secrets=self.webhook_secrets, tolerance=self.webhook_tolerance, gateway=self.name
        )

    # --- events for the delivery task ---

    def _event_id(self, row: SimulatedIntent, event_type: str, object_id: str) -> str:
        seed = f"{row.intent_id}:{row.version}:{event_type}:{object_id}"
        return "evt_sim_" + hashlib.sha256(seed.encode()).hexdigest()[:24]

    def signed_payment_event(
        self,
        gateway_payment_id: str,
        *,
        merchant_account: str | None = None,
        event_type: str | None = None,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """The ``payment_intent.*`` event for the intent's current state, signed.

        The event id depends only on the intent and its state version, so a task
        that retries the delivery re-sends the same event id and the receiver
        de-duplicates it.
        """
        row = self._find(gateway_payment_id, merchant_account)
        if row is None:
            raise known_error("not_found", gateway=NAME)
        payment = self._payment(row)
        event_type = event_type or _EVENT_FOR_STATUS[payment.status]
        intent = dict(row.data["intent"])  # as Stripe sends it: latest_charge not expanded
        return build_signed_event(
            event_type,
            intent,
            secret=self.webhook_secrets[0],
            event_id=self._event_id(row, event_type, row.intent_id),
            created=int(self._clock()),
            account=merchant_account,
            timestamp=timestamp,
        )

    def signed_refund_event(
        self,
        gateway_payment_id: str,
        gateway_refund_id: str,
        *,
        merchant_account: str | None = None,
        event_type: str = "refund.created",
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        row = self._find(gateway_payment_id, merchant_account)
        refund = None
        if row is not None:
            refund = next((r for r in row.data["refunds"] if r["id"] == gateway_refund_id), None)
        if row is None or refund is None:
            raise _error("The payment provider has no record of this refund.", "not_found", 404)
        return build_signed_event(
            event_type,
            refund,
            secret=self.webhook_secrets[0],
            event_id=self._event_id(row, event_type, gateway_refund_id),
            created=int(self._clock()),
            account=merchant_account,
            timestamp=timestamp,
        )


__all__ = [
    "ALLOWED_TRANSITIONS",
    "CARDS",
    "CHALLENGE_PATH",
    "SimulatedGateway",
    "build_signed_event",
    "sign_payload",
]
