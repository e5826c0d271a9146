"""Braintree, through the official SDK (XML over HTTPS to ``/merchants/{id}/...``).

* The browser gets a client token (for the merchant's ``merchant_account_id``)
  and runs Drop-in, which does 3D Secure itself and hands back a nonce; there is
  no server-side object before that, so :meth:`BraintreeGateway.create_payment`
  only returns a local ``requires_payment_method`` payment.
* :meth:`~BraintreeGateway.confirm_payment` is ``transaction.sale`` with the
  nonce, ``device_data``, ``options.submit_for_settlement`` (automatic capture),
  ``options.three_d_secure.required`` (SCA mode ``any``), the merchant account,
  our payment id as ``order_id`` and an ``api_request_key`` derived from our ids.
* Refunds: Braintree refunds only settled sales. A refund of an unsettled sale
  fails with error 91506; for the full amount we void instead, for part of it
  we raise a clear ApplicationError.
* Fraud: the transaction's ``risk_data`` (decision, score, reasons, device data)
  is mapped onto :class:`~payments.gateways.base.FraudAssessment`.
* Webhooks arrive form-encoded (``bt_signature``, ``bt_payload``) and are
  parsed with ``gateway.webhook_notification.parse``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.parsers.expat import ExpatError

import braintree as braintree_sdk
from braintree.exceptions import (
    AuthenticationError,
    AuthorizationError,
    GatewayTimeoutError,
    InvalidSignatureError,
    NotFoundError,
    RequestTimeoutError,
    ServerError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnexpectedError,
)
from braintree.exceptions.braintree_error import BraintreeError
from braintree.util.xml_util import XmlUtil

from payments import money
from payments.gateways import declines
from payments.gateways.base import (
    UNAVAILABLE_MESSAGE,
    CardDetails,
    ClientConfig,
    FraudAssessment,
    GatewayDispute,
    GatewayError,
    GatewayEvent,
    GatewayPayment,
    GatewayRefund,
    InvalidWebhook,
    PaymentRef,
    PaymentRequest,
    ThreeDSecure,
    check_refund_amount,
    known_error,
)
from security.errors import ApplicationError

NAME = "braintree"

# Braintree re-sends a failed notification for hours with its original payload and
# timestamp, so a 300-second window would drop its own retries. Replays inside this
# window are caught by the event id (a hash of the signed payload) being stored once.
DEFAULT_WEBHOOK_MAX_AGE = timedelta(days=3)

CANNOT_REFUND_UNLESS_SETTLED = "91506"
CANNOT_REFUND_SETTLING = "91574"
CANNOT_VOID = "91504"
REFUND_AMOUNT_TOO_LARGE = "91521"
ALREADY_REFUNDED = "91512"

_TXN_STATUS = {
    "authorization_expired": "canceled",
    "authorized": "requires_capture",
    "authorizing": "processing",
    "settlement_pending": "succeeded",
    "settlement_confirmed": "succeeded",
    "settled": "succeeded",
    "settling": "succeeded",
    "submitted_for_settlement": "succeeded",
    "failed": "failed",
    "gateway_rejected": "failed",
    "processor_declined": "failed",
    "settlement_declined": "failed",
    "voided": "canceled",
}
_SETTLED = frozenset({"settled", "settlement_confirmed"})
_REFUND_STATUS = {
    "authorized": "pending",
    "authorizing": "pending",
    "submitted_for_settlement": "succeeded",
    "settling": "succeeded",
    "settlement_pending": "succeeded",
    "settled": "succeeded",
    "settlement_confirmed": "succeeded",
    "voided": "canceled",
    "failed": "failed",
    "gateway_rejected": "failed",
    "processor_declined": "failed",
    "settlement_declined": "failed",
}
_DISPUTE_STATUS = {
    "open": "needs_response",
    "disputed": "under_review",
    "under_review": "under_review",
    "won": "won",
    "lost": "lost",
    "accepted": "lost",
    "auto_accepted": "lost",
    "expired": "lost",
}
_DECISION = {
    "Approve": ("authorized", "normal"),
    "Review": ("manual_review", "elevated"),
    "Decline": ("blocked", "highest"),
    "Not Evaluated": (None, "not_assessed"),
}

TRANSACTION_EVENT_KINDS = frozenset(
    {"transaction_settled", "transaction_settlement_declined", "transaction_disbursed"}
)
DISPUTE_EVENT_KINDS = frozenset(
    {
        "dispute_opened",
        "dispute_won",
        "dispute_lost",
        "dispute_accepted",
        "dispute_auto_accepted",
        "dispute_disputed",
        "dispute_expired",
        "dispute_under_review",
    }
)


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """Braintree objects only have the attributes present in the XML."""
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _aware(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None


def _minor(value: Any, currency: str | None) -> int | None:
    if value in (None, "") or not currency:
        return None
    try:
        return money.from_decimal(value if isinstance(value, Decimal) else str(value), currency)
    except ApplicationError:
        return None


def _amount(obj: Any, currency: str | None, *, what: str) -> int:
    """The transaction's ``amount`` in minor units; never a made-up zero.

    A transaction or credit whose amount is missing or cannot be read in its currency
    raises the malformed-response GatewayError: recording 0 instead would be wrong money.
    """
    value = _get(obj, "amount")
    minor = _minor(value, currency)
    if minor is None:
        in_currency = currency or "(no currency)"
        raise known_error(
            "malformed_response",
            gateway=NAME,
            detail=f"{what} {_get(obj, 'id')!r} has no readable amount: {value!r} {in_currency}",
        )
    return minor


def jsonable(value: Any) -> Any:
    """Parsed Braintree XML (Decimals, datetimes) as plain JSON-able data."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def fraud_from_risk_data(risk_data: Any, *, rejection_reason: str | None = None) -> FraudAssessment | None:
    decision = _get(risk_data, "decision")
    if risk_data is None and rejection_reason not in ("fraud", "risk_threshold"):
        return None
    outcome_type, risk_level = _DECISION.get(decision or "", (None, None))
    if rejection_reason in ("fraud", "risk_threshold"):
        outcome_type, risk_level = "blocked", "highest"
    reasons = _get(risk_data, "decision_reasons") or []
    score = _get(risk_data, "transaction_risk_score")
    return FraudAssessment(
        provider=NAME,
        type=outcome_type,
        risk_level=risk_level,
        risk_score=int(score) if isinstance(score, int | str) and str(score).isdigit() else None,
        reason=(reasons[0] if reasons else rejection_reason),
        rule=None,
        seller_message=None,
        network_status="not_sent_to_network" if outcome_type == "blocked" else None,
        decision=decision,
        device_data_captured=_get(risk_data, "device_data_captured"),
    )


def payment_from_transaction(
    txn: Any,
    *,
    gateway: str = NAME,
    request_currency: str | None = None,
    currencyless_notification: bool = False,
) -> GatewayPayment:
    """Normalise a ``braintree.Transaction``.

    An amount that is missing or unreadable raises the malformed-response GatewayError.
    The one exception is ``currencyless_notification``: a webhook's transaction without a
    currency (Braintree's disbursement notification omits it), whose amount cannot be
    converted. Such a notification is only a cue: Braintree payment events are fetched
    again before anything is applied (``payments.services.REFETCH_ON_PAYMENT_EVENT``), and
    the event built from it carries no amount.
    """
    raw_status = str(_get(txn, "status") or "")
    status = _TXN_STATUS.get(raw_status, "processing")
    currency = (_get(txn, "currency_iso_code") or request_currency or "").upper()
    # 0 only for a currency-less notification, whose amount is never read (see above).
    unreadable = currencyless_notification and not currency
    amount = 0 if unreadable else _amount(txn, currency, what="transaction")

    decline_code = decline_message = gateway_code = None
    retryable = False
    rejection = _get(txn, "gateway_rejection_reason")
    if status == "failed":
        if raw_status == "gateway_rejected":
            decline_code = declines.braintree_rejection_decline(rejection)
            gateway_code = rejection
        elif raw_status == "settlement_declined":
            gateway_code = _get(txn, "processor_settlement_response_code")
            decline_code = declines.braintree_processor_decline(gateway_code)
        else:
            gateway_code = _get(txn, "processor_response_code")
            decline_code = declines.braintree_processor_decline(gateway_code)
        decline_message = declines.decline_message(decline_code)
        retryable = declines.is_retryable_decline(decline_code)

    card_obj = _get(txn, "credit_card_details")
    card = None
    if card_obj is not None and (_get(card_obj, "last_4") or _get(card_obj, "card_type")):
        brand = _get(card_obj, "card_type")
        card = CardDetails(
            brand=brand.lower().replace(" ", "_") if isinstance(brand, str) else None,
            last4=_get(card_obj, "last_4"),
            country=_get(card_obj, "country_of_issuance") or None,
            fingerprint=_get(card_obj, "unique_number_identifier") or None,
            exp_month=int(m) if str(m := _get(card_obj, "expiration_month") or "").isdigit() else None,
            exp_year=int(y) if str(y := _get(card_obj, "expiration_year") or "").isdigit() else None,
            funding="debit" if _get(card_obj, "debit") == "Yes" else None,
            bin=b if (b := str(_get(card_obj, "bin") or "")).isdigit() and len(b) in (6, 8) else None,
        )
    tds = _get(txn, "three_d_secure_info")
    three_d_secure = None
    if tds is not None:
        three_d_secure = ThreeDSecure(
            result=_get(tds, "status"),
            liability_shifted=_get(tds, "liability_shifted"),
            version=_get(tds, "three_d_secure_version"),
        )

    captured = raw_status in ("submitted_for_settlement", "settling", "settlement_pending", "settled")
    captured = captured or raw_status == "settlement_confirmed"
    return GatewayPayment(
        gateway=gateway,
        gateway_payment_id=_get(txn, "id"),
        status=status,  # type: ignore[arg-type]
        gateway_status=raw_status,
        amount=amount,
        currency=currency,
        payment_id=_get(txn, "order_id") or None,
        merchant_account=_get(txn, "merchant_account_id"),
        capture_method="manual" if raw_status == "authorized" else "automatic",
        amount_received=amount if captured else 0,
        amount_capturable=amount if raw_status == "authorized" else 0,
        amount_refunded=0,  # a sale does not carry its refunds' amounts; refunds are separate credits
        decline_code=decline_code,
        decline_message=decline_message,
        gateway_code=str(gateway_code) if gateway_code else None,
        failure_retryable=retryable,
        card=card,
        three_d_secure=three_d_secure,
        fraud=fraud_from_risk_data(_get(txn, "risk_data"), rejection_reason=rejection),
        settled=raw_status in _SETTLED,
        created=_aware(_get(txn, "created_at")),
    )


def refund_from_transaction(
    credit: Any, *, refund_id: str | None, original_id: str, request_currency: str | None = None
) -> GatewayRefund:
    """Normalise a refund's credit transaction; an unreadable amount raises (see :func:`_amount`)."""
    raw_status = str(_get(credit, "status") or "")
    currency = str(_get(credit, "currency_iso_code") or request_currency or "").upper()
    return GatewayRefund(
        gateway=NAME,
        gateway_refund_id=str(_get(credit, "id") or ""),
        gateway_payment_id=_get(credit, "refunded_transaction_id") or original_id,
        status=_REFUND_STATUS.get(raw_status, "pending"),  # type: ignore[arg-type]
        amount=_amount(credit, currency, what="refund credit"),
        currency=currency,
        refund_id=refund_id,
        method="refund",
        gateway_status=raw_status,
        failure_reason=(
            "The card network declined the refund at settlement"
            + (f" ({text})" if (text := _get(credit, "processor_settlement_response_text")) else "")
            if raw_status == "settlement_declined"
            else None
        ),
        created=_aware(_get(credit, "created_at")),
    )


def dispute_from_braintree(dispute: Any) -> GatewayDispute:
    raw_status = str(_get(dispute, "status") or "")
    currency = (_get(dispute, "currency_iso_code") or "").upper() or None
    amount = _get(dispute, "amount_disputed")
    if amount is None:
        amount = _get(dispute, "amount")
    txn = _get(dispute, "transaction")
    return GatewayDispute(
        gateway_dispute_id=str(_get(dispute, "id") or ""),
        gateway_payment_id=_get(txn, "id"),
        status=_DISPUTE_STATUS.get(raw_status, "under_review"),  # type: ignore[arg-type]
        gateway_status=raw_status,
        amount=_minor(amount, currency),
        currency=currency,
        reason=_get(dispute, "reason"),
        evidence_due_by=_aware(_get(dispute, "reply_by_date")),
    )


def environment_for(name: str, api_url: str | None = None) -> braintree_sdk.Environment:
    """``sandbox``/``production``, or a custom base URL (tests and benchmarks point at a fake)."""
    if api_url:
        parts = urlsplit(api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"BRAINTREE_API_URL must be an http(s) URL, not {api_url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        # The SDK chooses https only for port 443; anything else is plain http.
        https = parts.scheme == "https"
        if https != (port == 443):
            raise ValueError("BRAINTREE_API_URL: the Braintree SDK uses https exactly when the port is 443")
        # ssl_certificate=True makes requests verify against the system's CAs.
        return braintree_sdk.Environment(
            "custom", parts.hostname, str(port), api_url, https, True if https else None
        )
    try:
        return braintree_sdk.Environment.All[name]
    except KeyError:
        raise ValueError(f"BRAINTREE_ENVIRONMENT must be sandbox or production, not {name!r}") from None


def _errors(result: Any) -> list[tuple[str, str]]:
    errors = _get(result, "errors")
    if errors is None:
        return []
    return [(str(e.code), str(e.message)) for e in errors.deep_errors]


def _error_detail(result: Any) -> str:
    """An unsuccessful result's validation errors (or its message), for logs."""
    errors = _errors(result)
    return "; ".join(f"{code} {text}" for code, text in errors) or str(_get(result, "message") or "")


class BraintreeGateway:
    """The :class:`~payments.gateways.base.PaymentGateway` for Braintree."""

    name = NAME

    def __init__(
        self,
        *,
        environment: str,
        merchant_id: str,
        public_key: str,
        private_key: str,
        api_url: str | None = None,
        timeout: int = 30,
        webhook_max_age: timedelta = DEFAULT_WEBHOOK_MAX_AGE,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if not (merchant_id and public_key and private_key):
            raise ValueError("BraintreeGateway needs a merchant id, a public key and a private key")
        self.environment = environment
        self.webhook_max_age = webhook_max_age
        self._now = now or (lambda: datetime.now(UTC))
        config = braintree_sdk.Configuration(
            environment=environment_for(environment, api_url),
            merchant_id=merchant_id,
            public_key=public_key,
            private_key=private_key,
            timeout=timeout,
            wrap_http_exceptions=True,
        )
        self.sdk = braintree_sdk.BraintreeGateway(config)

    def __repr__(self) -> str:
        return f"<BraintreeGateway environment={self.environment!r}>"

    # --- errors ---

    def _sdk_error(self, exc: Exception) -> GatewayError:
        detail = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, NotFoundError):
            return known_error("not_found", gateway=self.name, detail=detail)
        if isinstance(exc, AuthenticationError | AuthorizationError):
            return known_error("configuration", gateway=self.name, detail=detail)
        if isinstance(exc, TooManyRequestsError):
            return known_error("rate_limited", gateway=self.name, detail=detail)
        if isinstance(
            exc,
            ServerError
            | ServiceUnavailableError
            | GatewayTimeoutError
            | RequestTimeoutError
            | UnexpectedError,
        ):
            return known_error("unreachable", gateway=self.name, detail=detail)
        return known_error("unavailable", gateway=self.name, detail=detail)

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except BraintreeError as exc:
            raise self._sdk_error(exc) from exc
        except (InvalidOperation, AttributeError, TypeError) as exc:
            # The SDK builds its objects from the response as it reads it: a transaction
            # without an amount (or with a nil or non-numeric one) fails inside it.
            raise known_error(
                "malformed_response", gateway=self.name, detail=f"{type(exc).__name__}: {exc}"
            ) from exc

    def _validation_error(self, result: Any, *, message: str) -> GatewayError:
        return GatewayError(
            message, gateway=self.name, code="gateway_rejected", detail=_error_detail(result), status_code=400
        )

    # --- protocol ---

    def create_payment(self, request: PaymentRequest) -> GatewayPayment:
        # Nothing exists at Braintree until the browser sends a nonce.
        return GatewayPayment(
            gateway=self.name,
            gateway_payment_id=None,
            status="requires_payment_method",
            gateway_status="",
            amount=request.amount,
            currency=request.currency,
            payment_id=request.payment_id,
            merchant_account=request.merchant_account,
            capture_method=request.capture_method,
        )

    def client_config(self, request: PaymentRequest, payment: GatewayPayment) -> ClientConfig:
        params: dict[str, Any] = {}
        if request.merchant_account:
            params["merchant_account_id"] = request.merchant_account
        try:
            token = self._call(self.sdk.client_token.generate, params)
        except ValueError as exc:  # the SDK raises ValueError with the API's message
            raise GatewayError(
                UNAVAILABLE_MESSAGE,
                gateway=self.name,
                code="gateway_rejected",
                detail=str(exc),
            ) from exc
        return ClientConfig(
            gateway=self.name,
            client_token=token,
            options={
                # Drop-in's threeDSecure.amount and our SCA mode for the page.
                "amount": str(money.to_decimal(request.amount, request.currency)),
                "currency": request.currency,
                "three_d_secure": True,
                "three_d_secure_required": request.sca_mode == "any",
                "merchant_account_id": request.merchant_account,
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
        options: dict[str, Any] = {"submit_for_settlement": request.capture_method == "automatic"}
        if request.sca_mode == "any":
            options["three_d_secure"] = {"required": True}
        params: dict[str, Any] = {
            "amount": money.to_decimal(request.amount, request.currency),
            "payment_method_nonce": payment_method,
            "order_id": request.payment_id,
            "api_request_key": f"{request.payment_id}:confirm:{attempt}",
            "options": options,
        }
        if request.merchant_account:
            params["merchant_account_id"] = request.merchant_account
        if device_data:
            params["device_data"] = device_data
        if request.customer_email:
            params["customer"] = {"email": request.customer_email}
        result = self._call(self.sdk.transaction.sale, params)
        txn = _get(result, "transaction")
        if result.is_success or txn is not None:
            # Declines and rejections come back as unsuccessful results carrying the transaction.
            return payment_from_transaction(txn, gateway=self.name, request_currency=request.currency)
        raise self._validation_error(
            result, message="We could not use that payment method. Try again, or use a different card."
        )

    def capture_payment(self, ref: PaymentRef, *, amount: int | None = None) -> GatewayPayment:
        value = money.to_decimal(amount, ref.currency) if amount is not None else None
        result = self._call(
            self.sdk.transaction.submit_for_settlement,
            ref.gateway_payment_id,
            value,
            {"api_request_key": f"{ref.payment_id}:capture"},
        )
        if not result.is_success:
            raise self._validation_error(result, message="This payment can no longer be captured.")
        return payment_from_transaction(result.transaction, gateway=self.name, request_currency=ref.currency)

    def cancel_payment(self, ref: PaymentRef) -> GatewayPayment:
        result = self._call(
            self.sdk.transaction.void, ref.gateway_payment_id, {"api_request_key": f"{ref.payment_id}:cancel"}
        )
        if not result.is_success:
            raise known_error("cannot_cancel", gateway=self.name, detail=_error_detail(result))
        return payment_from_transaction(result.transaction, gateway=self.name, request_currency=ref.currency)

    def refund_payment(
        self,
        ref: PaymentRef,
        *,
        refund_id: str,
        amount: int | None = None,
        reason: str | None = None,
    ) -> GatewayRefund:
        check_refund_amount(amount, gateway=self.name)
        options: dict[str, Any] = {"order_id": refund_id, "api_request_key": f"{refund_id}:refund"}
        if amount is not None:
            options["amount"] = money.to_decimal(amount, ref.currency)
        result = self._call(self.sdk.transaction.refund, ref.gateway_payment_id, options)
        if result.is_success:
            return refund_from_transaction(
                result.transaction,
                refund_id=refund_id,
                original_id=ref.gateway_payment_id,
                request_currency=ref.currency,
            )

        codes = {code for code, _ in _errors(result)}
        if CANNOT_REFUND_UNLESS_SETTLED in codes:
            return self._void_instead_of_refund(ref, refund_id=refund_id, amount=amount)
        if CANNOT_REFUND_SETTLING in codes:
            raise GatewayError(
                "This payment is being settled right now and cannot be refunded or voided. "
                "Try again in a few hours.",
                gateway=self.name,
                code="refund_not_yet_possible",
                retryable=True,
                detail=CANNOT_REFUND_SETTLING,
                status_code=409,
            )
        if REFUND_AMOUNT_TOO_LARGE in codes:
            raise known_error("refund_too_large", gateway=self.name, detail=REFUND_AMOUNT_TOO_LARGE)
        if ALREADY_REFUNDED in codes:
            raise known_error("already_refunded", gateway=self.name, detail=ALREADY_REFUNDED)
        raise self._validation_error(result, message="The payment provider refused the refund.")

    def _void_instead_of_refund(
        self, ref: PaymentRef, *, refund_id: str, amount: int | None
    ) -> GatewayRefund:
        txn = self._call(self.sdk.transaction.find, ref.gateway_payment_id)
        payment = payment_from_transaction(txn, gateway=self.name, request_currency=ref.currency)
        if amount is not None and amount != payment.amount:
            raise ApplicationError(
                "This Braintree payment has not settled yet, so it can only be refunded in full, which "
                "cancels (voids) it. Refund part of it once it has settled, usually within a day.",
                code="partial_refund_before_settlement",
                status_code=409,
            )
        result = self._call(
            self.sdk.transaction.void, ref.gateway_payment_id, {"api_request_key": f"{refund_id}:void"}
        )
        if not result.is_success:
            raise self._validation_error(
                result, message="This payment could not be refunded. Try again later."
            )
        return self._void_refund(result.transaction, refund_id=refund_id, currency=ref.currency)

    def fetch_payment(self, ref: PaymentRef) -> GatewayPayment:
        txn = self._call(self.sdk.transaction.find, ref.gateway_payment_id)
        return payment_from_transaction(txn, gateway=self.name, request_currency=ref.currency)

    def find_payment(
        self, request: PaymentRequest, *, gateway_payment_id: str | None
    ) -> GatewayPayment | None:
        """Each attempt is a sale of its own, and Braintree keeps no idempotency key we can trust
        across a lost answer: the sales whose ``order_id`` is our payment id are searched, and the
        one that went through (or else the latest) is the payment's record."""
        found = self._call(
            self.sdk.transaction.search, [braintree_sdk.TransactionSearch.order_id == request.payment_id]
        )
        sales = [
            payment_from_transaction(txn, gateway=self.name, request_currency=request.currency)
            for txn in found.items
            if _get(txn, "type") == "sale"
        ]
        if not sales:
            return None
        through = [p for p in sales if p.status not in ("failed", "canceled", "requires_payment_method")]
        latest = max(through or sales, key=lambda p: p.created or datetime.min.replace(tzinfo=UTC))
        return latest

    def fetch_refund(self, ref: PaymentRef, gateway_refund_id: str) -> GatewayRefund:
        """A refund's current state: Braintree refunds are credit transactions of their own
        (or, for a sale refunded before it settled, the voided sale itself)."""
        credit = self._call(self.sdk.transaction.find, gateway_refund_id)
        if _get(credit, "type") == "sale":
            return self._void_refund(credit, refund_id=None, currency=ref.currency)
        return refund_from_transaction(
            credit, refund_id=None, original_id=ref.gateway_payment_id, request_currency=ref.currency
        )

    def find_refund(self, ref: PaymentRef, *, refund_id: str) -> GatewayRefund | None:
        """Braintree keeps no idempotency key we can trust across a lost answer: the sale's
        credits are searched for the one whose ``order_id`` is our refund id (what
        :meth:`refund_payment` sends). A sale voided instead of refunded is that refund too:
        a void is the only full refund of an unsettled sale, and ours is the one pending."""
        sale = self._call(self.sdk.transaction.find, ref.gateway_payment_id)
        for credit_id in _get(sale, "refund_ids") or []:
            credit = self._call(self.sdk.transaction.find, str(credit_id))
            if _get(credit, "order_id") == refund_id:
                return refund_from_transaction(
                    credit,
                    refund_id=refund_id,
                    original_id=ref.gateway_payment_id,
                    request_currency=ref.currency,
                )
        if _get(sale, "status") == "voided":
            return self._void_refund(sale, refund_id=refund_id, currency=ref.currency)
        return None

    def _void_refund(self, sale: Any, *, refund_id: str | None, currency: str) -> GatewayRefund:
        payment = payment_from_transaction(sale, gateway=self.name, request_currency=currency)
        return GatewayRefund(
            gateway=self.name,
            gateway_refund_id=str(_get(sale, "id")),
            gateway_payment_id=str(_get(sale, "id")),
            status="succeeded" if _get(sale, "status") == "voided" else "pending",
            amount=payment.amount,
            currency=payment.currency,
            refund_id=refund_id,
            method="void",
            gateway_status=str(_get(sale, "status") or ""),
            created=_aware(_get(sale, "updated_at")),
        )

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        try:
            fields = parse_qs(bytes(body).decode("ascii"), keep_blank_values=False, strict_parsing=True)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidWebhook("malformed", "body is not form-encoded") from exc
        signature = (fields.get("bt_signature") or [""])[0]
        payload = (fields.get("bt_payload") or [""])[0]
        if not signature or not payload:
            raise InvalidWebhook("malformed", "bt_signature and bt_payload are required")
        if not re.fullmatch(r"[A-Za-z0-9+/=\r\n]+", payload):
            raise InvalidWebhook("malformed", "bt_payload is not base64")
        try:
            notification = self.sdk.webhook_notification.parse(signature, payload)
        except InvalidSignatureError as exc:
            raise InvalidWebhook("bad_signature", str(exc)) from exc
        except (ExpatError, binascii.Error, KeyError, TypeError, ValueError, AttributeError) as exc:
            # The signature verified but the payload is not a notification.
            raise InvalidWebhook("malformed", type(exc).__name__) from exc

        created = _aware(_get(notification, "timestamp"))
        if created is None:
            raise InvalidWebhook("malformed", "notification has no timestamp")
        if self._now() - created > self.webhook_max_age:
            raise InvalidWebhook("stale_timestamp", f"older than {self.webhook_max_age}")
        try:
            raw = jsonable(XmlUtil.dict_from_xml(base64.b64decode(payload)))
        except (ExpatError, binascii.Error, ValueError) as exc:  # pragma: no cover - parse() already read it
            raise InvalidWebhook("malformed", type(exc).__name__) from exc
        return self._event(notification, created=created, payload=payload, raw=raw)

    def _event(
        self, notification: Any, *, created: datetime, payload: str, raw: dict[str, Any]
    ) -> GatewayEvent:
        kind = str(_get(notification, "kind") or "")
        digest = hashlib.sha256(re.sub(r"\s", "", payload).encode()).hexdigest()
        common: dict[str, Any] = {
            "gateway": self.name,
            "event_id": f"bt_{digest[:40]}",
            "type": kind,
            "created": created,
            "livemode": self.environment == "production",
            "raw": raw,
        }
        txn = _get(notification, "transaction")
        if kind in TRANSACTION_EVENT_KINDS and txn is not None:
            currencyless = not _get(txn, "currency_iso_code")
            try:
                payment = payment_from_transaction(
                    txn, gateway=self.name, currencyless_notification=currencyless
                )
            except GatewayError as exc:  # an amount that cannot be read in the given currency
                raise InvalidWebhook("malformed", exc.detail) from exc
            if kind == "transaction_disbursed" and not payment.gateway_status:
                # The disbursed notification omits the status: disbursed funds were settled.
                payment = _with_status(payment, "succeeded", settled=True)
            return GatewayEvent(
                kind="payment",
                **_event_account(notification, payment.merchant_account),
                object_id=payment.gateway_payment_id,
                status=payment.status,
                gateway_payment_id=payment.gateway_payment_id,
                payment_id=payment.payment_id,
                amount=None if currencyless else payment.amount,
                currency=payment.currency or None,
                payment=payment,
                fraud=payment.fraud,
                **common,
            )
        dispute_obj = _get(notification, "dispute")
        if kind in DISPUTE_EVENT_KINDS and dispute_obj is not None:
            dispute = dispute_from_braintree(dispute_obj)
            return GatewayEvent(
                kind="dispute",
                **_event_account(notification, _get(dispute_obj, "merchant_account_id")),
                object_id=dispute.gateway_dispute_id,
                status=dispute.status,
                gateway_payment_id=dispute.gateway_payment_id,
                amount=dispute.amount,
                currency=dispute.currency,
                dispute=dispute,
                **common,
            )
        subject = (
            raw.get("notification", {}).get("subject", {})
            if isinstance(raw.get("notification"), dict)
            else {}
        )
        object_id = None
        if isinstance(subject, dict):
            for value in subject.values():
                if isinstance(value, dict) and isinstance(value.get("id"), str):
                    object_id = value["id"]
                    break
        return GatewayEvent(kind="unknown", known=False, object_id=object_id, account_known=False, **common)


def _event_account(notification: Any, merchant_account: Any) -> dict[str, Any]:
    """Which account a notification's transaction or dispute belongs to, for ``GatewayEvent``.

    Our payments are all made in our own gateway, in the merchant account the payment names.
    A notification sent on behalf of another Braintree merchant (``source_merchant_id``, a
    partner connection) is about that merchant's objects: its account never matches one of ours.
    Notifications that do not name a merchant account say nothing either way (``account_known``
    false): what the transaction's own record says, fetched by our id, is judged instead.
    """
    account = str(merchant_account) if isinstance(merchant_account, str) and merchant_account else None
    source = _get(notification, "source_merchant_id")
    if source:
        return {"account": f"{source}:{account or ''}", "account_known": True}
    return {"account": account, "account_known": account is not None}


def _with_status(payment: GatewayPayment, status: str, *, settled: bool) -> GatewayPayment:
    return replace(payment, status=status, settled=settled, amount_received=payment.amount)  # type: ignore[arg-type]


__all__ = [
    "DEFAULT_WEBHOOK_MAX_AGE",
    "BraintreeGateway",
    "dispute_from_braintree",
    "environment_for",
    "fraud_from_risk_data",
    "jsonable",
    "payment_from_transaction",
    "refund_from_transaction",
]
