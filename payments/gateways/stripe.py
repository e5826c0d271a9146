"""Stripe, through the official SDK's :class:`stripe.StripeClient`.

* Payments are PaymentIntents with ``automatic_payment_methods`` and
  ``payment_method_options.card.request_three_d_secure`` (``automatic``, or
  ``any`` for merchants who want 3D Secure on every card that supports it).
* A merchant's connected account goes in the ``Stripe-Account`` header (the
  SDK's ``stripe_account`` request option).
* Every write carries an idempotency key derived from our ids
  (``pay_...:create``, ``pay_...:confirm:1``, ``re_...:refund``), so a retried
  call never charges or refunds twice.
* Radar's ``outcome`` on the latest charge is mapped onto the result.
* Webhooks are verified with ``stripe.Webhook.construct_event`` against every
  secret in ``STRIPE_WEBHOOK_SECRET`` (comma-separated, for rotation) with the
  SDK's 300-second tolerance.

The normalising functions (:func:`payment_from_intent`, :func:`parse_stripe_webhook`...)
work on plain Stripe-shaped dicts, so the simulated gateway reuses them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import stripe as stripe_sdk

from payments.gateways import declines
from payments.gateways.base import (
    UNAVAILABLE_MESSAGE,
    CardDetails,
    ClientConfig,
    FraudAssessment,
    GatewayDispute,
    GatewayError,
    GatewayEvent,
    GatewayFraudWarning,
    GatewayPayment,
    GatewayRefund,
    InvalidWebhook,
    KnownError,
    NextAction,
    PaymentRef,
    PaymentRequest,
    ThreeDSecure,
    check_refund_amount,
    known_error,
    lower_headers,
)

NAME = "stripe"
RADAR = "stripe_radar"
DEFAULT_TOLERANCE = stripe_sdk.Webhook.DEFAULT_TOLERANCE  # 300 seconds
SIGNATURE_HEADER = "stripe-signature"
# Ids minted by the simulated gateway; a real Stripe id never contains a second underscore.
SIMULATED_EVENT_PREFIX = "evt_sim_"

_EXPAND = ["latest_charge"]
# A PaymentIntent has a handful of refunds; listing stops (unsure) past this many pages of 100.
_MAX_REFUND_PAGES = 20

_INTENT_STATUS: dict[str, str] = {
    "requires_payment_method": "requires_payment_method",
    "requires_confirmation": "requires_payment_method",
    "requires_action": "requires_action",
    "processing": "processing",
    "requires_capture": "requires_capture",
    "succeeded": "succeeded",
    "canceled": "canceled",
}
_CHARGE_STATUS = {"succeeded": "succeeded", "pending": "processing", "failed": "failed"}
_REFUND_STATUS = {
    "pending": "pending",
    "requires_action": "pending",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
}
_DISPUTE_STATUS = {
    "warning_needs_response": "needs_response",
    "needs_response": "needs_response",
    "warning_under_review": "under_review",
    "under_review": "under_review",
    "won": "won",
    "lost": "lost",
    "warning_closed": "closed",
    "prevented": "closed",
}

PAYMENT_EVENT_TYPES = frozenset(
    {
        "payment_intent.created",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.requires_action",
        "payment_intent.canceled",
        "payment_intent.processing",
        "payment_intent.amount_capturable_updated",
    }
)
CHARGE_EVENT_TYPES = frozenset({"charge.refunded"})
REFUND_EVENT_TYPES = frozenset({"charge.refund.updated", "refund.created", "refund.updated", "refund.failed"})
DISPUTE_EVENT_TYPES = frozenset({"charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed"})
FRAUD_WARNING_EVENT_TYPES = frozenset(
    {"radar.early_fraud_warning.created", "radar.early_fraud_warning.updated"}
)


# --- Normalising Stripe-shaped dicts ---------------------------------------------------------


def _dt(epoch: Any) -> datetime | None:
    if isinstance(epoch, bool) or not isinstance(epoch, int | float):
        return None
    return datetime.fromtimestamp(int(epoch), tz=UTC)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _amount(obj: Mapping[str, Any], *, what: str, gateway: str) -> int:
    """A PaymentIntent's or Refund's ``amount`` in minor units; never a made-up zero.

    Stripe always sends it, as a non-negative JSON integer. Missing, null, a string, a
    float, a boolean or a negative number raises the malformed-response GatewayError:
    recording 0 instead would be wrong money.
    """
    value = obj.get("amount")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise known_error(
            "malformed_response",
            gateway=gateway,
            detail=f"{what} {obj.get('id')!r} has no readable amount: {repr(value)[:40]}",
        )
    return value


def _provider(gateway: str) -> str:
    """Radar's outcome, or the simulated gateway's imitation of it."""
    return RADAR if gateway == NAME else f"{gateway}_radar"


def _currency(value: Any) -> str | None:
    return value.upper() if isinstance(value, str) and value else None


def _without_secrets(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy fit to store: a PaymentIntent's client_secret lets a browser confirm it."""
    return {
        k: (_without_secrets(v) if isinstance(v, Mapping) else v)
        for k, v in obj.items()
        if k != "client_secret"
    }


def fraud_from_outcome(outcome: Mapping[str, Any] | None, *, provider: str = RADAR) -> FraudAssessment | None:
    if not outcome:
        return None
    rule = outcome.get("rule")
    if isinstance(rule, Mapping):
        rule = rule.get("id") or rule.get("predicate")
    return FraudAssessment(
        provider=provider,
        type=outcome.get("type"),
        risk_level=outcome.get("risk_level"),
        risk_score=_int(outcome.get("risk_score")),
        reason=outcome.get("reason"),
        rule=rule if isinstance(rule, str) else None,
        seller_message=outcome.get("seller_message"),
        network_status=outcome.get("network_status"),
    )


def _bin(value: Any) -> str | None:
    text = str(value or "")
    return text if text.isdigit() and len(text) in (6, 8) else None


def _card_from_charge(charge: Mapping[str, Any]) -> tuple[CardDetails | None, ThreeDSecure | None]:
    card = _dict(_dict(charge.get("payment_method_details")).get("card"))
    if not card:
        return None, None
    details = CardDetails(
        brand=card.get("brand"),
        last4=card.get("last4"),
        country=card.get("country"),
        fingerprint=card.get("fingerprint"),
        exp_month=_int(card.get("exp_month")),
        exp_year=_int(card.get("exp_year")),
        funding=card.get("funding"),
        # Stripe does not normally return the card's IIN; the simulated gateway does.
        bin=_bin(card.get("iin")),
    )
    tds = _dict(card.get("three_d_secure"))
    three_d_secure = None
    if tds:
        result = tds.get("result")
        three_d_secure = ThreeDSecure(
            result=result,
            liability_shifted=result in ("authenticated", "attempt_acknowledged"),
            version=tds.get("version"),
        )
    return details, three_d_secure


def decline_from_error(error: Mapping[str, Any]) -> str:
    """Our decline code (Stripe's vocabulary) for a ``last_payment_error`` or an API error body."""
    code = error.get("code")
    if code == "payment_intent_authentication_failure":
        return declines.AUTHENTICATION_FAILED
    decline_code = error.get("decline_code")
    if decline_code:
        return str(decline_code)
    if code and code != "card_declined":
        return str(code)
    return "generic_decline"


def payment_from_intent(
    intent: Mapping[str, Any], *, gateway: str = NAME, merchant_account: str | None = None
) -> GatewayPayment:
    """Normalise a Stripe-shaped PaymentIntent dict (``latest_charge`` expanded or not).

    ``amount`` is required: one that is missing or not an integer raises the
    malformed-response GatewayError (see :func:`_amount`). ``amount_received``,
    ``amount_capturable`` and the charge's ``amount_refunded`` (only there when
    ``latest_charge`` is expanded) count as 0 when absent, as before.
    """
    raw_status = str(intent.get("status") or "")
    error = _dict(intent.get("last_payment_error"))
    status = _INTENT_STATUS.get(raw_status, "processing")
    if raw_status == "requires_payment_method" and error:
        status = "failed"

    decline_code = decline_message = gateway_code = None
    retryable = False
    if error and status == "failed":
        decline_code = decline_from_error(error)
        decline_message = declines.decline_message(decline_code)
        gateway_code = error.get("code")
        retryable = declines.is_retryable_decline(decline_code)

    next_action = None
    action = _dict(intent.get("next_action"))
    if action and status == "requires_action":
        redirect = _dict(action.get("redirect_to_url"))
        if action.get("type") == "redirect_to_url" and redirect:
            next_action = NextAction(
                type="redirect",
                url=redirect.get("url"),
                return_url=redirect.get("return_url"),
                data=dict(action),
            )
        else:
            next_action = NextAction(type="use_sdk", data=dict(action))

    latest = intent.get("latest_charge")
    charge = _dict(latest)
    charge_id = charge.get("id") if charge else (latest if isinstance(latest, str) else None)
    card, three_d_secure = _card_from_charge(charge) if charge else (None, None)
    metadata = _dict(intent.get("metadata"))
    currency = _currency(intent.get("currency")) or ""
    amount = _amount(intent, what="PaymentIntent", gateway=gateway)
    return GatewayPayment(
        gateway=gateway,
        gateway_payment_id=intent.get("id"),
        status=status,  # type: ignore[arg-type]
        gateway_status=raw_status,
        amount=amount,
        currency=currency,
        payment_id=metadata.get("payment_id"),
        merchant_account=merchant_account,
        capture_method=str(intent.get("capture_method") or "automatic"),
        amount_received=_int(intent.get("amount_received")) or 0,
        amount_capturable=_int(intent.get("amount_capturable")) or 0,
        amount_refunded=(_int(charge.get("amount_refunded")) or 0) if charge else 0,
        decline_code=decline_code,
        decline_message=decline_message,
        gateway_code=gateway_code,
        failure_retryable=retryable,
        next_action=next_action,
        card=card,
        three_d_secure=three_d_secure,
        fraud=fraud_from_outcome(_dict(charge.get("outcome")), provider=_provider(gateway))
        if charge
        else None,
        charge_id=charge_id,
        created=_dt(intent.get("created")),
        client_secret=intent.get("client_secret"),
        raw=_without_secrets(intent),
    )


def refund_from_stripe(refund: Mapping[str, Any], *, gateway: str = NAME) -> GatewayRefund:
    """Normalise a Stripe-shaped Refund dict; an unreadable ``amount`` raises (see :func:`_amount`)."""
    raw_status = str(refund.get("status") or "pending")
    metadata = _dict(refund.get("metadata"))
    return GatewayRefund(
        gateway=gateway,
        gateway_refund_id=str(refund.get("id") or ""),
        gateway_payment_id=str(refund.get("payment_intent") or refund.get("charge") or ""),
        status=_REFUND_STATUS.get(raw_status, "pending"),  # type: ignore[arg-type]
        amount=_amount(refund, what="Refund", gateway=gateway),
        currency=_currency(refund.get("currency")) or "",
        refund_id=metadata.get("refund_id"),
        gateway_status=raw_status,
        reason=refund.get("reason"),
        failure_reason=refund.get("failure_reason"),
        created=_dt(refund.get("created")),
        raw=dict(refund),
    )


def dispute_from_stripe(dispute: Mapping[str, Any]) -> GatewayDispute:
    raw_status = str(dispute.get("status") or "")
    return GatewayDispute(
        gateway_dispute_id=str(dispute.get("id") or ""),
        gateway_payment_id=dispute.get("payment_intent") or None,
        status=_DISPUTE_STATUS.get(raw_status, "under_review"),  # type: ignore[arg-type]
        gateway_status=raw_status,
        amount=_int(dispute.get("amount")),
        currency=_currency(dispute.get("currency")),
        reason=dispute.get("reason"),
        evidence_due_by=_dt(_dict(dispute.get("evidence_details")).get("due_by")),
        charge_id=dispute.get("charge") if isinstance(dispute.get("charge"), str) else None,
    )


def fraud_warning_from_stripe(warning: Mapping[str, Any]) -> GatewayFraudWarning:
    charge = warning.get("charge")
    return GatewayFraudWarning(
        gateway_warning_id=str(warning.get("id") or ""),
        gateway_payment_id=warning.get("payment_intent") or None,
        charge_id=charge if isinstance(charge, str) else _dict(charge).get("id"),
        fraud_type=warning.get("fraud_type"),
        actionable=bool(warning.get("actionable")),
    )


def event_from_stripe(event: Mapping[str, Any], *, gateway: str = NAME) -> GatewayEvent:
    """Normalise a verified Stripe-shaped event dict. Raises InvalidWebhook if its shape is wrong.

    A payment or refund event whose PaymentIntent or Refund has no readable ``amount`` is
    malformed too: refused (400, nothing stored) rather than stored with a made-up amount.
    """
    event_id = event.get("id")
    event_type = event.get("type")
    created = _dt(event.get("created"))
    obj = _dict(event.get("data", {}).get("object") if isinstance(event.get("data"), Mapping) else None)
    if not isinstance(event_id, str) or not isinstance(event_type, str) or created is None or not obj:
        raise InvalidWebhook("malformed", "event lacks id, type, created or data.object")
    if event_id.startswith(SIMULATED_EVENT_PREFIX):
        gateway = "simulated"

    common: dict[str, Any] = {
        "gateway": gateway,
        "event_id": event_id,
        "type": event_type,
        "created": created,
        "object_id": obj.get("id") if isinstance(obj.get("id"), str) else None,
        "account": event.get("account") if isinstance(event.get("account"), str) else None,
        "livemode": bool(event.get("livemode")),
        "raw": _without_secrets(event),
    }
    if event_type in PAYMENT_EVENT_TYPES and obj.get("object") == "payment_intent":
        try:
            payment = payment_from_intent(obj, gateway=gateway, merchant_account=common["account"])
        except GatewayError as exc:  # no readable amount
            raise InvalidWebhook("malformed", exc.detail) from exc
        return GatewayEvent(
            kind="payment",
            status=payment.status,
            gateway_payment_id=payment.gateway_payment_id,
            payment_id=payment.payment_id,
            amount=payment.amount,
            currency=payment.currency,
            amount_refunded=payment.amount_refunded,
            payment=payment,
            fraud=payment.fraud,
            **common,
        )
    if event_type in CHARGE_EVENT_TYPES and obj.get("object") == "charge":
        return GatewayEvent(
            kind="refund",
            status=_CHARGE_STATUS.get(str(obj.get("status")), "processing"),
            gateway_payment_id=obj.get("payment_intent") or None,
            payment_id=_dict(obj.get("metadata")).get("payment_id"),
            amount=_int(obj.get("amount")),
            currency=_currency(obj.get("currency")),
            amount_refunded=_int(obj.get("amount_refunded")),
            fraud=fraud_from_outcome(_dict(obj.get("outcome")), provider=_provider(gateway)),
            **common,
        )
    if event_type in REFUND_EVENT_TYPES and obj.get("object") == "refund":
        try:
            refund = refund_from_stripe(obj, gateway=gateway)
        except GatewayError as exc:  # no readable amount
            raise InvalidWebhook("malformed", exc.detail) from exc
        return GatewayEvent(
            kind="refund",
            status=refund.status,
            gateway_payment_id=refund.gateway_payment_id or None,
            payment_id=_dict(obj.get("metadata")).get("payment_id"),
            amount=refund.amount,
            currency=refund.currency,
            refund=refund,
            **common,
        )
    if event_type in DISPUTE_EVENT_TYPES and obj.get("object") == "dispute":
        dispute = dispute_from_stripe(obj)
        return GatewayEvent(
            kind="dispute",
            status=dispute.status,
            gateway_payment_id=dispute.gateway_payment_id,
            amount=dispute.amount,
            currency=dispute.currency,
            dispute=dispute,
            **common,
        )
    if event_type in FRAUD_WARNING_EVENT_TYPES and obj.get("object") == "radar.early_fraud_warning":
        warning = fraud_warning_from_stripe(obj)
        return GatewayEvent(
            kind="fraud_warning",
            status="actionable" if warning.actionable else "not_actionable",
            gateway_payment_id=warning.gateway_payment_id,
            fraud_warning=warning,
            **common,
        )
    return GatewayEvent(kind="unknown", known=False, **common)


def verify_stripe_webhook(
    body: bytes,
    signature_header: str | None,
    secrets: Sequence[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    """Verify with the SDK against each secret in turn; return the event as a plain dict.

    The SDK checks the signature first and the timestamp second; when a secret's
    signature matches but the timestamp is too old we report ``stale_timestamp``
    rather than ``bad_signature``.
    """
    usable = [s for s in secrets if s and s.strip()]
    if not usable:
        raise InvalidWebhook("bad_signature", "no webhook secret is configured")
    if not signature_header:
        raise InvalidWebhook("bad_signature", "no Stripe-Signature header")
    try:
        payload = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidWebhook("malformed", "body is not UTF-8") from exc

    stale = False
    for secret in usable:
        try:
            # The SDK's own check (HMAC-SHA256 over "<t>.<body>", constant-time compare, tolerance).
            # Parsing is ours: a plain dict is all we keep, and building the SDK's StripeObject
            # tree first costs more than the rest of ingestion together.
            stripe_sdk.WebhookSignature.verify_header(payload, signature_header, secret, tolerance=tolerance)
        except stripe_sdk.SignatureVerificationError:
            try:
                # Same check without the clock: does this secret's signature match at all?
                stripe_sdk.WebhookSignature.verify_header(payload, signature_header, secret, tolerance=None)
            except stripe_sdk.SignatureVerificationError:
                continue
            stale = True
            continue
        try:
            raw = json.loads(payload)
        except ValueError as exc:
            # The signature verified, so the sender holds our secret, but the body is not an event.
            raise InvalidWebhook("malformed", f"{type(exc).__name__}") from exc
        if not isinstance(raw, dict):
            raise InvalidWebhook("malformed", "event is not an object")
        return raw
    if stale:
        raise InvalidWebhook("stale_timestamp", f"older than {tolerance} seconds")
    raise InvalidWebhook("bad_signature", "no secret matched")


def parse_stripe_webhook(
    body: bytes,
    headers: Mapping[str, str],
    *,
    secrets: Sequence[str],
    tolerance: int = DEFAULT_TOLERANCE,
    gateway: str = NAME,
) -> GatewayEvent:
    """Verify and normalise one Stripe-shaped webhook (also the simulated gateway's)."""
    signature = lower_headers(headers).get(SIGNATURE_HEADER)
    raw = verify_stripe_webhook(body, signature, secrets, tolerance=tolerance)
    return event_from_stripe(raw, gateway=gateway)


def split_secrets(value: str | Sequence[str] | None) -> list[str]:
    """``"whsec_new,whsec_old"`` -> ``["whsec_new", "whsec_old"]`` (order kept, blanks dropped)."""
    if not value:
        return []
    parts = value.split(",") if isinstance(value, str) else list(value)
    return [p.strip() for p in parts if p and p.strip()]


# --- Errors -------------------------------------------------------------------------------------------

# Stripe's invalid_request_error codes that every gateway words the same way.
_KNOWN_REQUEST_ERRORS: dict[str, KnownError] = {
    "resource_missing": "not_found",
    "payment_intent_unexpected_state": "illegal_transition",
    "charge_already_refunded": "already_refunded",
    "amount_too_large": "refund_too_large",
}


def gateway_error_from_stripe(exc: stripe_sdk.StripeError) -> GatewayError:
    """Translate an SDK exception into a GatewayError with a message fit for users."""
    body = exc.json_body if isinstance(exc.json_body, Mapping) else {}
    error = _dict(body.get("error"))
    code = error.get("code") or getattr(exc, "code", None)
    detail = f"{type(exc).__name__}: {code or ''} {error.get('message') or ''}".strip()
    if isinstance(exc, stripe_sdk.CardError):
        decline_code = decline_from_error(error)
        return GatewayError(
            declines.decline_message(decline_code),
            gateway=NAME,
            code="card_declined",
            decline_code=decline_code,
            retryable=declines.is_retryable_decline(decline_code),
            detail=detail,
            status_code=402,
        )
    if isinstance(exc, stripe_sdk.RateLimitError):
        return known_error("rate_limited", gateway=NAME, detail=detail)
    if isinstance(exc, stripe_sdk.APIConnectionError):
        return known_error("unreachable", gateway=NAME, detail=detail)
    if isinstance(exc, stripe_sdk.AuthenticationError | stripe_sdk.PermissionError):
        return known_error("configuration", gateway=NAME, detail=detail)
    if isinstance(exc, stripe_sdk.IdempotencyError):
        return known_error("idempotency_conflict", gateway=NAME, detail=detail)
    if isinstance(exc, stripe_sdk.InvalidRequestError):
        if code == "resource_missing" and error.get("param") == "payment_method":
            return GatewayError(
                "That payment method could not be used. Try again, or use another card.",
                gateway=NAME,
                code="invalid_payment_method",
                detail=detail,
                status_code=400,
            )
        if code in _KNOWN_REQUEST_ERRORS:
            return known_error(_KNOWN_REQUEST_ERRORS[code], gateway=NAME, detail=detail)
        return GatewayError(
            "The payment provider refused the request.", gateway=NAME, code="gateway_rejected", detail=detail
        )
    if isinstance(exc, stripe_sdk.APIError):
        status = getattr(exc, "http_status", None) or 500
        return GatewayError(
            UNAVAILABLE_MESSAGE,
            gateway=NAME,
            code="gateway_unavailable",
            retryable=status >= 500,
            detail=detail,
        )
    return known_error("unavailable", gateway=NAME, detail=detail)


# --- The adapter ------------------------------------------------------------------------------------------


class StripeGateway:
    """The :class:`~payments.gateways.base.PaymentGateway` for Stripe."""

    name = NAME

    def __init__(
        self,
        *,
        secret_key: str,
        publishable_key: str,
        webhook_secrets: str | Sequence[str] = (),
        api_base: str | None = None,
        default_return_url: str = "http://127.0.0.1:8000/",
        max_network_retries: int = 2,
        webhook_tolerance: int = DEFAULT_TOLERANCE,
        http_client: stripe_sdk.HTTPClient | None = None,
    ) -> None:
        if not secret_key:
            raise ValueError("StripeGateway needs a secret key")
        self.publishable_key = publishable_key
        self.webhook_secrets = split_secrets(webhook_secrets)
        self.webhook_tolerance = webhook_tolerance
        self.default_return_url = default_return_url
        self.livemode = secret_key.startswith(("sk_live_", "rk_live_"))
        self._client = stripe_sdk.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=max_network_retries,
            http_client=http_client,
        )

    def __repr__(self) -> str:
        return f"<StripeGateway livemode={self.livemode}>"

    # The SDK's services; kept in one place.
    @property
    def _intents(self) -> Any:
        return self._client.v1.payment_intents

    @staticmethod
    def _options(idempotency_key: str | None, account: str | None) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if idempotency_key:
            options["idempotency_key"] = idempotency_key
        if account:
            options["stripe_account"] = account
        return options

    @staticmethod
    def _call(fn: Callable[..., Any], *args: Any) -> Any:
        """One SDK call; its errors become GatewayErrors fit to show (declines included)."""
        try:
            return fn(*args)
        except stripe_sdk.StripeError as exc:
            raise gateway_error_from_stripe(exc) from exc

    def _payment(self, intent: Any, account: str | None) -> GatewayPayment:
        return payment_from_intent(intent.to_dict(), gateway=self.name, merchant_account=account)

    def _retrieve(self, intent_id: str, account: str | None) -> GatewayPayment:
        options = self._options(None, account)
        intent = self._call(self._intents.retrieve, intent_id, {"expand": _EXPAND}, options)
        return self._payment(intent, account)

    def _after_card_error(self, exc: stripe_sdk.CardError, account: str | None) -> GatewayPayment:
        """A decline: Stripe answers 402 and the PaymentIntent in the error body is the truth."""
        body = exc.json_body if isinstance(exc.json_body, Mapping) else {}
        intent = _dict(_dict(body.get("error")).get("payment_intent"))
        if not intent.get("id"):
            raise gateway_error_from_stripe(exc) from exc
        try:
            # Fetch it again, expanded, for the charge's Radar outcome and card details.
            return self._retrieve(str(intent["id"]), account)
        except GatewayError:
            return payment_from_intent(intent, gateway=self.name, merchant_account=account)

    # --- protocol ---

    def create_payment(self, request: PaymentRequest) -> GatewayPayment:
        params: dict[str, Any] = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "automatic_payment_methods": {"enabled": True},
            "capture_method": request.capture_method,
            "payment_method_options": {"card": {"request_three_d_secure": request.sca_mode}},
            "metadata": {"payment_id": request.payment_id},
            "expand": _EXPAND,
        }
        if request.description:
            params["description"] = request.description[:1000]
        if request.customer_email:
            params["receipt_email"] = request.customer_email
        options = self._options(f"{request.payment_id}:create", request.merchant_account)
        intent = self._call(self._intents.create, params, options)
        return self._payment(intent, request.merchant_account)

    def client_config(self, request: PaymentRequest, payment: GatewayPayment) -> ClientConfig:
        secret = payment.client_secret
        if not secret and payment.gateway_payment_id:
            secret = self._retrieve(payment.gateway_payment_id, request.merchant_account).client_secret
        return ClientConfig(
            gateway=self.name,
            publishable_key=self.publishable_key,
            client_secret=secret,
            stripe_account=request.merchant_account,
            options={"sca_mode": request.sca_mode, "capture_method": request.capture_method},
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
        params = {
            "payment_method": payment_method,
            "return_url": return_url or self.default_return_url,
            "expand": _EXPAND,
        }
        options = self._options(f"{request.payment_id}:confirm:{attempt}", request.merchant_account)
        try:
            intent = self._intents.confirm(gateway_payment_id, params, options)
        except stripe_sdk.CardError as exc:
            return self._after_card_error(exc, request.merchant_account)
        except stripe_sdk.StripeError as exc:
            raise gateway_error_from_stripe(exc) from exc
        return self._payment(intent, request.merchant_account)

    def capture_payment(self, ref: PaymentRef, *, amount: int | None = None) -> GatewayPayment:
        params: dict[str, Any] = {"expand": _EXPAND}
        if amount is not None:
            params["amount_to_capture"] = amount
        options = self._options(f"{ref.payment_id}:capture", ref.merchant_account)
        intent = self._call(self._intents.capture, ref.gateway_payment_id, params, options)
        return self._payment(intent, ref.merchant_account)

    def cancel_payment(self, ref: PaymentRef) -> GatewayPayment:
        options = self._options(f"{ref.payment_id}:cancel", ref.merchant_account)
        try:
            intent = self._intents.cancel(ref.gateway_payment_id, {"expand": _EXPAND}, options)
        except stripe_sdk.StripeError as exc:
            error = gateway_error_from_stripe(exc)
            if error.code == "illegal_transition":
                error = known_error("cannot_cancel", gateway=self.name, detail=error.detail)
            raise error from exc
        return self._payment(intent, ref.merchant_account)

    def refund_payment(
        self,
        ref: PaymentRef,
        *,
        refund_id: str,
        amount: int | None = None,
        reason: str | None = None,
    ) -> GatewayRefund:
        check_refund_amount(amount, gateway=self.name)
        params: dict[str, Any] = {
            "payment_intent": ref.gateway_payment_id,
            "metadata": {"refund_id": refund_id, "payment_id": ref.payment_id},
        }
        if amount is not None:
            params["amount"] = amount
        if reason in ("duplicate", "fraudulent", "requested_by_customer"):
            params["reason"] = reason
        options = self._options(f"{refund_id}:refund", ref.merchant_account)
        refunds: Any = self._client.v1.refunds
        refund = self._call(refunds.create, params, options)
        return refund_from_stripe(refund.to_dict(), gateway=self.name)

    def fetch_payment(self, ref: PaymentRef) -> GatewayPayment:
        return self._retrieve(ref.gateway_payment_id, ref.merchant_account)

    def find_payment(
        self, request: PaymentRequest, *, gateway_payment_id: str | None
    ) -> GatewayPayment | None:
        # Every attempt confirms the same PaymentIntent: it is the record of them all.
        if not gateway_payment_id:
            return None
        return self._retrieve(gateway_payment_id, request.merchant_account)

    def fetch_refund(self, ref: PaymentRef, gateway_refund_id: str) -> GatewayRefund:
        refunds: Any = self._client.v1.refunds
        options = self._options(None, ref.merchant_account)
        refund = self._call(refunds.retrieve, gateway_refund_id, {}, options)
        return refund_from_stripe(refund.to_dict(), gateway=self.name)

    def find_refund(self, ref: PaymentRef, *, refund_id: str) -> GatewayRefund | None:
        """The PaymentIntent's refunds, page by page, for the one whose metadata carries our id
        (what :meth:`refund_payment` sends): found this way whatever became of its idempotency key."""
        refunds: Any = self._client.v1.refunds
        options = self._options(None, ref.merchant_account)
        params: dict[str, Any] = {"payment_intent": ref.gateway_payment_id, "limit": 100}
        for _page in range(_MAX_REFUND_PAGES):
            page = self._call(refunds.list, params, options)
            found = [r.to_dict() for r in page.data]
            for refund in found:
                if _dict(refund.get("metadata")).get("refund_id") == refund_id:
                    return refund_from_stripe(refund, gateway=self.name)
            if not page.has_more or not found:
                return None
            params["starting_after"] = found[-1]["id"]
        raise known_error(
            "malformed_response", gateway=self.name, detail=f"more than {_MAX_REFUND_PAGES} pages of refunds"
        )

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        return parse_stripe_webhook(
            body, headers, secrets=self.webhook_secrets, tolerance=self.webhook_tolerance, gateway=self.name
        )


def event_json(event: Mapping[str, Any]) -> bytes:
    """Serialise an event the way we sign it (compact, stable key order as given)."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


__all__ = [
    "DEFAULT_TOLERANCE",
    "StripeGateway",
    "decline_from_error",
    "dispute_from_stripe",
    "event_from_stripe",
    "event_json",
    "fraud_from_outcome",
    "gateway_error_from_stripe",
    "parse_stripe_webhook",
    "payment_from_intent",
    "refund_from_stripe",
    "split_secrets",
    "verify_stripe_webhook",
]
