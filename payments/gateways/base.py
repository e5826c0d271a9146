"""The one small protocol every payment gateway implements, and what it returns.

Gateways (:mod:`.stripe`, :mod:`.braintree`, :mod:`.simulated`) keep every
vendor call inside their module and hand back the plain, frozen dataclasses
below, with statuses normalised to one vocabulary. Code above this layer
(services, webhook handling, dashboards) never sees a vendor object.

Identifiers: ``payment_id`` / ``refund_id`` are ours (``pay_...``, ``re_...``,
see :mod:`security.ids`) and are what idempotency keys are derived from;
``gateway_payment_id`` / ``gateway_refund_id`` are the gateway's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from payments import money
from security.errors import ApplicationError

GatewayName = Literal["stripe", "braintree", "simulated"]

PaymentStatus = Literal[
    "requires_payment_method",  # created, or waiting for another card after a failed attempt
    "requires_action",  # the customer must authenticate (3D Secure) or follow a redirect
    "processing",  # the gateway has not decided yet
    "requires_capture",  # authorised, funds held, waiting for capture (manual capture only)
    "succeeded",
    "failed",  # the last attempt was declined or blocked; see decline_code
    "canceled",
]
PAYMENT_STATUSES: frozenset[str] = frozenset(PaymentStatus.__args__)  # type: ignore[attr-defined]

RefundStatus = Literal["pending", "succeeded", "failed", "canceled"]
REFUND_STATUSES: frozenset[str] = frozenset(RefundStatus.__args__)  # type: ignore[attr-defined]

DisputeStatus = Literal["needs_response", "under_review", "won", "lost", "closed"]
DISPUTE_STATUSES: frozenset[str] = frozenset(DisputeStatus.__args__)  # type: ignore[attr-defined]

EventKind = Literal["payment", "refund", "dispute", "fraud_warning", "unknown"]

ScaMode = Literal["automatic", "any"]
CaptureMethod = Literal["automatic", "manual"]
SCA_MODES: frozenset[str] = frozenset(ScaMode.__args__)  # type: ignore[attr-defined]
CAPTURE_METHODS: frozenset[str] = frozenset(CaptureMethod.__args__)  # type: ignore[attr-defined]


# --- Errors -------------------------------------------------------------------------------------


class GatewayError(ApplicationError):
    """A gateway call failed. ``message`` is always safe to show to the user.

    ``retryable`` says whether the same call may succeed later (network trouble,
    rate limits, the gateway's own 5xx). ``detail`` carries the gateway's
    internal explanation for logs; it is never rendered.
    """

    status_code = 502
    code = "gateway_error"

    def __init__(
        self,
        message: str,
        *,
        gateway: str,
        code: str | None = None,
        retryable: bool = False,
        decline_code: str | None = None,
        detail: str = "",
        status_code: int | None = None,
    ) -> None:
        if status_code is None:
            status_code = 503 if retryable else None
        super().__init__(message, code=code, status_code=status_code)
        self.gateway = gateway
        self.retryable = retryable
        self.decline_code = decline_code
        self.detail = detail

    @property
    def user_message(self) -> str:
        return self.message

    @property
    def outcome_unknown(self) -> bool:
        """Whether the call may have taken effect at the gateway although it raised: the answer
        was lost (a timeout, a dropped connection), unreadable, or the gateway failed while
        handling it (its own 5xx). A refusal we can read (a decline, a validation error, a rate
        limit) means nothing was done."""
        return self.code in OUTCOME_UNKNOWN_CODES

    def __repr__(self) -> str:
        return (
            f"GatewayError(gateway={self.gateway!r}, code={self.code!r}, "
            f"retryable={self.retryable!r}, message={self.message!r})"
        )


# The codes of errors after which a write may or may not have happened at the gateway
# (see GatewayError.outcome_unknown): the unreachable and malformed-response known errors,
# and a gateway's own server error.
OUTCOME_UNKNOWN_CODES = frozenset(
    {"gateway_unreachable", "gateway_malformed_response", "gateway_unavailable"}
)

# The failures every gateway can meet, worded once: (message, our code, HTTP status, retryable).
# A status of None keeps GatewayError's own (502, or 503 when retryable).
UNAVAILABLE_MESSAGE = "Payments are unavailable right now. Try again in a few minutes."
KnownError = Literal[
    "not_found",
    "configuration",
    "unavailable",
    "rate_limited",
    "unreachable",
    "idempotency_conflict",
    "illegal_transition",
    "cannot_cancel",
    "already_refunded",
    "refund_too_large",
    "invalid_refund_amount",
    "malformed_response",
]
_KNOWN_ERRORS: dict[KnownError, tuple[str, str, int | None, bool]] = {
    "not_found": ("The payment provider has no record of this payment.", "not_found", 404, False),
    "configuration": (UNAVAILABLE_MESSAGE, "gateway_configuration", None, False),
    "unavailable": (UNAVAILABLE_MESSAGE, "gateway_error", None, False),
    "rate_limited": ("The payment provider is busy. Try again in a moment.", "rate_limited", None, True),
    "unreachable": (
        "We could not reach the payment provider. Try again in a moment.",
        "gateway_unreachable",
        None,
        True,
    ),
    "idempotency_conflict": (
        "This request conflicts with an earlier one for the same payment.",
        "idempotency_conflict",
        409,
        False,
    ),
    "illegal_transition": (
        "This payment can no longer be changed that way.",
        "illegal_transition",
        409,
        False,
    ),
    "cannot_cancel": (
        "This payment can no longer be cancelled; refund it instead.",
        "illegal_transition",
        409,
        False,
    ),
    "already_refunded": ("This payment has already been fully refunded.", "already_refunded", 409, False),
    "refund_too_large": (
        "The refund is larger than the amount left to refund.",
        "refund_too_large",
        400,
        False,
    ),
    "invalid_refund_amount": ("The refund amount must be a positive amount.", "invalid_amount", 400, False),
    # The call may have taken effect at the gateway, so the message promises nothing either way.
    "malformed_response": (
        "The payment provider's answer could not be read, so we could not confirm the outcome. "
        "Check the payment again in a few minutes.",
        "gateway_malformed_response",
        None,
        False,
    ),
}


def known_error(what: KnownError, *, gateway: str, detail: str = "") -> GatewayError:
    """The GatewayError for a failure every gateway words the same way (see ``_KNOWN_ERRORS``)."""
    message, code, status_code, retryable = _KNOWN_ERRORS[what]
    return GatewayError(
        message, gateway=gateway, code=code, retryable=retryable, detail=detail, status_code=status_code
    )


def check_refund_amount(amount: int | None, *, gateway: str) -> None:
    """A refund is of everything (``None``) or of a positive whole number of minor units."""
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0):
        raise known_error("invalid_refund_amount", gateway=gateway)


InvalidWebhookReason = Literal["bad_signature", "stale_timestamp", "malformed"]


class InvalidWebhook(ApplicationError):
    """A webhook failed verification or could not be parsed. Answer 400, store nothing."""

    status_code = 400
    code = "invalid_webhook"

    def __init__(self, reason: InvalidWebhookReason, detail: str = "") -> None:
        messages = {
            "bad_signature": "The webhook signature did not verify.",
            "stale_timestamp": "The webhook is too old to accept.",
            "malformed": "The webhook body could not be parsed.",
        }
        super().__init__(messages[reason])
        self.reason: InvalidWebhookReason = reason
        self.detail = detail

    def __repr__(self) -> str:
        return f"InvalidWebhook(reason={self.reason!r}, detail={self.detail!r})"


# --- Inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentRequest:
    """Everything a gateway needs to take one payment for one checkout."""

    payment_id: str  # ours, e.g. pay_...; idempotency keys derive from it
    amount: int  # minor units
    currency: str  # ISO 4217, any case; stored upper-case
    description: str = ""
    customer_email: str | None = None
    merchant_account: str | None = None  # Stripe connected account (acct_...) / Braintree merchant account id
    sca_mode: ScaMode = "automatic"  # "any" asks for 3D Secure whenever the card supports it (PSD2)
    capture_method: CaptureMethod = "automatic"

    def __post_init__(self) -> None:
        if not isinstance(self.payment_id, str) or not self.payment_id:
            raise ApplicationError("A payment needs our payment id.", code="invalid_request")
        object.__setattr__(self, "currency", money.normalize_currency(self.currency))
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount <= 0:
            raise ApplicationError("The amount must be a positive whole number of minor units.")
        if self.amount > money.MAX_MINOR_AMOUNT:
            raise ApplicationError("The amount is too large.")
        if self.sca_mode not in SCA_MODES:
            raise ApplicationError(f"Unknown 3D Secure mode {self.sca_mode!r}; use 'automatic' or 'any'.")
        if self.capture_method not in CAPTURE_METHODS:
            raise ApplicationError(f"Unknown capture method {self.capture_method!r}.")


@dataclass(frozen=True)
class PaymentRef:
    """Which payment a follow-up call (capture, cancel, refund, fetch) is about."""

    payment_id: str  # ours
    gateway_payment_id: str
    currency: str
    merchant_account: str | None = None

    def __post_init__(self) -> None:
        if not self.gateway_payment_id:
            raise ApplicationError("This payment has not reached the gateway yet.", code="invalid_request")
        object.__setattr__(self, "currency", money.normalize_currency(self.currency))


# --- Results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardDetails:
    brand: str | None = None  # lower-case: visa, mastercard, amex...
    last4: str | None = None
    country: str | None = None  # issuing country as the gateway reports it
    fingerprint: str | None = None  # stable per card number within the gateway account
    exp_month: int | None = None
    exp_year: int | None = None
    funding: str | None = None  # credit, debit, prepaid
    bin: str | None = (
        None  # the first 6 or 8 digits (issuer identification number), when the gateway gives it
    )


@dataclass(frozen=True)
class ThreeDSecure:
    result: str | None = None  # authenticated, failed, attempt_acknowledged, not_supported...
    liability_shifted: bool | None = None
    version: str | None = None


@dataclass(frozen=True)
class FraudAssessment:
    """Radar's ``outcome`` (Stripe) or the fraud tools' ``risk_data`` (Braintree), normalised."""

    provider: str  # stripe_radar, braintree, simulated
    type: str | None = None  # authorized, manual_review, issuer_declined, blocked, invalid
    risk_level: str | None = None  # normal, elevated, highest, not_assessed, unknown
    risk_score: int | None = None  # 0-99 where the provider gives one
    reason: str | None = None
    rule: str | None = None
    seller_message: str | None = None
    network_status: str | None = None
    decision: str | None = None  # the provider's own word (Braintree: Approve, Review, Decline)
    device_data_captured: bool | None = None


@dataclass(frozen=True)
class NextAction:
    """What the customer must do before the payment can proceed."""

    type: Literal["redirect", "use_sdk"]
    url: str | None = None  # for redirect: where to send the customer for the 3DS challenge
    return_url: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class GatewayPayment:
    gateway: str
    gateway_payment_id: str | None
    status: PaymentStatus
    amount: int
    currency: str
    gateway_status: str = ""  # the gateway's own status word, for support staff
    payment_id: str | None = None  # ours, as echoed back by the gateway (metadata / order_id)
    merchant_account: str | None = None
    capture_method: str = "automatic"
    amount_received: int = 0
    amount_capturable: int = 0
    amount_refunded: int = 0
    decline_code: str | None = None  # Stripe's vocabulary, also for Braintree
    decline_message: str | None = None  # safe to show the customer
    gateway_code: str | None = None  # the gateway's raw code (card_declined, 2001, three_d_secure...)
    failure_retryable: bool = False  # the customer may try the same card again later
    next_action: NextAction | None = None
    card: CardDetails | None = None
    three_d_secure: ThreeDSecure | None = None
    fraud: FraudAssessment | None = None
    charge_id: str | None = None
    settled: bool | None = None  # Braintree: refundable (settled) rather than voidable
    created: datetime | None = None
    client_secret: str | None = field(default=None, repr=False, compare=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_final(self) -> bool:
        return self.status in ("succeeded", "canceled")


@dataclass(frozen=True)
class GatewayRefund:
    gateway: str
    gateway_refund_id: str
    gateway_payment_id: str
    status: RefundStatus
    amount: int
    currency: str
    refund_id: str | None = None  # ours
    method: Literal["refund", "void"] = "refund"  # Braintree voids unsettled sales instead
    gateway_status: str = ""
    reason: str | None = None
    failure_reason: str | None = None
    created: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class GatewayDispute:
    gateway_dispute_id: str
    gateway_payment_id: str | None
    status: DisputeStatus
    gateway_status: str
    amount: int | None
    currency: str | None
    reason: str | None = None
    evidence_due_by: datetime | None = None
    charge_id: str | None = None


@dataclass(frozen=True)
class GatewayFraudWarning:
    """An early fraud warning: the issuer says a payment is likely fraudulent (not yet a dispute)."""

    gateway_warning_id: str
    gateway_payment_id: str | None
    charge_id: str | None
    fraud_type: str | None
    actionable: bool


@dataclass(frozen=True)
class ClientConfig:
    """What the checkout page needs to render the gateway's card fields."""

    gateway: str
    publishable_key: str | None = None  # Stripe.js
    client_secret: str | None = field(default=None, repr=False)  # Stripe PaymentIntent secret
    client_token: str | None = field(default=None, repr=False)  # Braintree Drop-in
    stripe_account: str | None = None  # Stripe.js `stripeAccount` for connected accounts
    simulated: bool = False  # render our own simulated card form instead of a vendor's
    options: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class GatewayEvent:
    """A verified webhook, normalised. ``raw`` is the gateway's payload as a JSON-able dict."""

    gateway: str
    event_id: str
    type: str  # the gateway's own type: payment_intent.succeeded, transaction_settled...
    kind: EventKind
    created: datetime  # aware, UTC
    object_id: str | None
    known: bool = True
    status: str | None = None  # normalised status of the object (payment, refund or dispute vocabulary)
    gateway_payment_id: str | None = None
    payment_id: str | None = None  # ours, when the gateway echoes it back
    amount: int | None = None
    currency: str | None = None
    amount_refunded: int | None = None
    payment: GatewayPayment | None = None
    refund: GatewayRefund | None = None
    dispute: GatewayDispute | None = None
    fraud_warning: GatewayFraudWarning | None = None
    fraud: FraudAssessment | None = None
    account: str | None = None  # connected account (Stripe) / merchant account id (Braintree) it belongs to
    # False when the notification does not say which account it belongs to (some Braintree
    # notifications); ``account`` is then None and its object is judged by what we fetch.
    # True (the default) with ``account`` None means the platform's own account (Stripe).
    account_known: bool = True
    livemode: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


# --- The protocol -----------------------------------------------------------------------------------


@runtime_checkable
class PaymentGateway(Protocol):
    """One gateway. Implementations are cheap to call and hold no per-request state."""

    name: str

    def create_payment(self, request: PaymentRequest) -> GatewayPayment:
        """Start a payment for a checkout (Stripe: a PaymentIntent). Idempotent per payment id."""
        ...

    def client_config(self, request: PaymentRequest, payment: GatewayPayment) -> ClientConfig:
        """What the browser needs: publishable key and client secret, a client token, or a marker."""
        ...

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
        """Pay with a payment method (Stripe pm_..., Braintree nonce). Declines come back as
        ``status == "failed"`` with a decline code and message, not as exceptions."""
        ...

    def capture_payment(self, ref: PaymentRef, *, amount: int | None = None) -> GatewayPayment:
        """Capture an authorised payment (all of it, or ``amount``)."""
        ...

    def cancel_payment(self, ref: PaymentRef) -> GatewayPayment:
        """Cancel (Stripe) or void (Braintree) a payment that has not been captured or settled."""
        ...

    def refund_payment(
        self,
        ref: PaymentRef,
        *,
        refund_id: str,
        amount: int | None = None,
        reason: str | None = None,
    ) -> GatewayRefund:
        """Refund all (``amount=None``) or part of a payment. Idempotent per refund id."""
        ...

    def fetch_payment(self, ref: PaymentRef) -> GatewayPayment:
        """The payment's current state at the gateway."""
        ...

    def find_payment(
        self, request: PaymentRequest, *, gateway_payment_id: str | None
    ) -> GatewayPayment | None:
        """The payment's latest attempt at the gateway (by the gateway's id, or by ours where the
        gateway makes a new object per attempt), or ``None`` when there is none. For a confirm
        whose answer was lost: asked before another attempt is sent, so a card is never charged twice."""
        ...

    def fetch_refund(self, ref: PaymentRef, gateway_refund_id: str) -> GatewayRefund:
        """A refund's current state at the gateway, by the gateway's id for it."""
        ...

    def find_refund(self, ref: PaymentRef, *, refund_id: str) -> GatewayRefund | None:
        """The payment's refund made for our ``refund_id``, or ``None`` when the gateway has none.

        For a refund whose answer was lost: it is looked for before anything else is sent, so
        a refund that did happen is never sent twice."""
        ...

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        """Verify a webhook's signature and freshness and normalise it; raise InvalidWebhook."""
        ...


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header lookups are case-insensitive; Django's request.headers already is, dicts are not."""
    return {str(k).lower(): v for k, v in headers.items()}


__all__ = [
    "CAPTURE_METHODS",
    "DISPUTE_STATUSES",
    "PAYMENT_STATUSES",
    "REFUND_STATUSES",
    "SCA_MODES",
    "CardDetails",
    "ClientConfig",
    "FraudAssessment",
    "GatewayDispute",
    "GatewayError",
    "GatewayEvent",
    "GatewayFraudWarning",
    "GatewayPayment",
    "GatewayRefund",
    "InvalidWebhook",
    "OUTCOME_UNKNOWN_CODES",
    "KnownError",
    "NextAction",
    "PaymentGateway",
    "PaymentRef",
    "PaymentRequest",
    "ThreeDSecure",
    "check_refund_amount",
    "known_error",
]
