"""Writes for checkout sessions, payments, refunds, disputes and gateway webhooks.

The rules every function here keeps:

* Status fields move only through the transition tables below. A move the table
  does not allow is recorded as an ignored event and changes nothing.
* An event older than the newest one already applied to an object is recorded
  and ignored (``last_event_at``). When a payment event cannot be applied because
  order matters, the payment is re-fetched from the gateway and that state wins.
* One transaction per action: the row is locked, the status saved with
  ``update_fields``, a history row and an audit event written together.
* A gateway event touches a payment only when it belongs to it: the event's connected
  account (Stripe) or merchant account (Braintree) and mode are the payment's, it names the
  gateway object we stored for the payment (one found only through the ``pay_...`` id in its
  metadata makes us fetch ours by our own id instead), and a payment becomes authorised or
  succeeded only for its own amount and currency. Any other event is stored as
  ``mismatched``, never applied, audited (``webhook_event.mismatched``) and listed for
  platform admins in the Django admin.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from accounts import merchant_roles
from accounts.models import Merchant, User
from accounts.selectors import member_role_in
from payments import batch_memo, events_codec, fraud, money, selectors, signals, stats
from payments.gateways import registry
from payments.gateways.base import (
    ClientConfig,
    GatewayDispute,
    GatewayError,
    GatewayEvent,
    GatewayPayment,
    GatewayRefund,
    PaymentRef,
    PaymentRequest,
)
from payments.models import (
    CheckoutSession,
    Customer,
    Dispute,
    Payment,
    PaymentEvent,
    PaymentSettings,
    Refund,
    WebhookEvent,
)
from security import audit
from security.blind_index import blind_index
from security.errors import ApplicationError, Conflict, IllegalTransition, PermissionDeniedError

log = logging.getLogger("fintech_portal.payments")

S = Payment.Status
PAYMENT_TRANSITIONS: dict[str, frozenset[str]] = {
    S.REQUIRES_PAYMENT_METHOD: frozenset(
        {S.REQUIRES_ACTION, S.PROCESSING, S.REQUIRES_CAPTURE, S.SUCCEEDED, S.FAILED, S.CANCELED}
    ),
    S.REQUIRES_ACTION: frozenset({S.PROCESSING, S.REQUIRES_CAPTURE, S.SUCCEEDED, S.FAILED, S.CANCELED}),
    S.PROCESSING: frozenset({S.REQUIRES_CAPTURE, S.SUCCEEDED, S.FAILED, S.CANCELED}),
    S.REQUIRES_CAPTURE: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELED}),
    # A declined customer may try again (another card, or the challenge again).
    S.FAILED: frozenset({S.REQUIRES_ACTION, S.PROCESSING, S.REQUIRES_CAPTURE, S.SUCCEEDED, S.CANCELED}),
    S.SUCCEEDED: frozenset(),
    S.CANCELED: frozenset(),
}
TERMINAL_PAYMENT = frozenset({S.SUCCEEDED, S.CANCELED})
# The one move backwards: Braintree counts a sale submitted for settlement as paid, but the
# card network can still decline it at settlement. Only that gateway status may reverse it.
LATE_REVERSALS: dict[tuple[str, str], frozenset[str]] = {
    (S.SUCCEEDED, S.FAILED): frozenset({"settlement_declined"}),
}


def payment_move_allowed(current: str, to: str, *, gateway_status: str = "") -> bool:
    """Whether the transition table (or a gateway's late reversal) lets a payment move."""
    if to in PAYMENT_TRANSITIONS[current]:
        return True
    return bool(gateway_status) and gateway_status in LATE_REVERSALS.get((current, to), frozenset())


REFUND_TRANSITIONS: dict[str, frozenset[str]] = {
    Refund.Status.PENDING: frozenset({Refund.Status.SUCCEEDED, Refund.Status.FAILED, Refund.Status.CANCELED}),
    Refund.Status.SUCCEEDED: frozenset({Refund.Status.FAILED}),  # Stripe: a refund can still fail later
    Refund.Status.FAILED: frozenset(),
    Refund.Status.CANCELED: frozenset(),
}
D = Dispute.Status
DISPUTE_TRANSITIONS: dict[str, frozenset[str]] = {
    D.NEEDS_RESPONSE: frozenset({D.UNDER_REVIEW, D.WON, D.LOST, D.CLOSED}),
    D.UNDER_REVIEW: frozenset({D.NEEDS_RESPONSE, D.WON, D.LOST, D.CLOSED}),
    D.WON: frozenset(),
    D.LOST: frozenset(),
    D.CLOSED: frozenset(),
}
W = WebhookEvent.Status
WEBHOOK_EVENT_FAILED = W.FAILED
# Applying (webhook_apply) may also retry a failed event; giving up (webhook_event_fail) never
# touches an event already applied, ignored or held as mismatched.
WEBHOOK_EVENT_TRANSITIONS: dict[str, frozenset[str]] = {
    W.RECEIVED: frozenset({W.APPLIED, W.IGNORED, W.MISMATCHED, W.FAILED}),
    W.FAILED: frozenset({W.APPLIED, W.IGNORED, W.MISMATCHED, W.FAILED}),
    W.APPLIED: frozenset(),
    W.IGNORED: frozenset(),
    W.MISMATCHED: frozenset(),
}
WEBHOOK_EVENT_SETTLED = frozenset({W.APPLIED, W.IGNORED, W.MISMATCHED})
CHECKOUT_TRANSITIONS: dict[str, frozenset[str]] = {
    CheckoutSession.Status.OPEN: frozenset({CheckoutSession.Status.COMPLETE, CheckoutSession.Status.EXPIRED}),
    CheckoutSession.Status.COMPLETE: frozenset(),
    CheckoutSession.Status.EXPIRED: frozenset(),
}

DEFAULT_CHECKOUT_TTL = timedelta(hours=24)
MAX_CHECKOUT_TTL = timedelta(days=30)


# --- Merchant settings and customers -------------------------------------------------------


def payment_settings_for(merchant: Merchant) -> PaymentSettings:
    settings_row, _ = PaymentSettings.objects.get_or_create(merchant=merchant)
    return settings_row


def customer_for_email(*, merchant: Merchant, email: str) -> Customer:
    """The merchant's customer with this email (found by blind index), created if new."""
    email = (email or "").strip()
    digest = blind_index("email", email)
    existing = Customer.objects.filter(merchant=merchant, email_bidx=digest).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return Customer.objects.create(merchant=merchant, email=email)
    except IntegrityError:  # created concurrently
        return Customer.objects.get(merchant=merchant, email_bidx=digest)


# --- Checkout sessions --------------------------------------------------------------------------


def _mode_for(merchant: Merchant, gateway: str) -> str:
    if gateway == "simulated" or merchant.status != Merchant.Status.ACTIVE:
        return "test"
    from django.conf import settings

    if gateway == "stripe" and str(settings.STRIPE_SECRET_KEY).startswith("sk_test_"):
        return "test"
    if gateway == "braintree" and settings.BRAINTREE_ENVIRONMENT != "production":
        return "test"
    return "live"


def _validate_email(email: str) -> str:
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    email = (email or "").strip()
    if not email:
        return ""
    try:
        validate_email(email)
    except ValidationError as exc:
        raise ApplicationError("Enter a valid customer email address.", code="invalid_email") from exc
    return email


def checkout_session_create(
    *,
    actor: User | None,
    merchant: Merchant,
    amount: int,
    currency: str,
    description: str = "",
    customer_email: str = "",
    expires_in: timedelta = DEFAULT_CHECKOUT_TTL,
    via: str = "ui",
) -> CheckoutSession:
    """A payment link for a fixed amount. Onboarding merchants get test mode only."""
    currency = money.normalize_currency(currency)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ApplicationError("The amount must be more than zero.", code="invalid_amount")
    if amount > money.MAX_MINOR_AMOUNT:
        raise ApplicationError("The amount is too large.", code="invalid_amount")
    if not timedelta(minutes=5) <= expires_in <= MAX_CHECKOUT_TTL:
        raise ApplicationError("A payment link must expire between 5 minutes and 30 days from now.")
    if len(description) > 500:
        raise ApplicationError("Keep the description under 500 characters.")
    email = _validate_email(customer_email)
    if merchant.status == Merchant.Status.SUSPENDED:
        raise ApplicationError(
            "This merchant account is suspended and cannot take payments.", status_code=403
        )
    pay_settings = payment_settings_for(merchant)
    gateway = pay_settings.gateway or registry.default_gateway_name()
    if gateway not in registry.available_gateways():
        raise ApplicationError(f"Payments through {gateway} are not available on this platform.")
    now = timezone.now()
    with transaction.atomic():
        customer = customer_for_email(merchant=merchant, email=email) if email else None
        session = CheckoutSession.objects.create(
            merchant=merchant,
            amount=amount,
            currency=currency,
            description=description.strip(),
            customer=customer,
            gateway=gateway,
            mode=_mode_for(merchant, gateway),
            expires_at=now + expires_in,
            created_by=actor if isinstance(actor, User) else None,
            created_via=via,
            created_at=now,
        )
        audit.record(
            actor=actor,
            action="checkout_session.created",
            target=session,
            merchant=merchant,
            details={"amount": amount, "currency": currency, "mode": session.mode, "via": via},
        )
    return session


def _checkout_transition(session: CheckoutSession, to: str, *, actor: Any, reason: str = "") -> None:
    if to not in CHECKOUT_TRANSITIONS[session.status]:
        raise IllegalTransition(f"This payment link is {session.get_status_display().lower()} already.")
    previous = session.status
    session.status = to
    fields = ["status"]
    if to == CheckoutSession.Status.COMPLETE:
        session.completed_at = timezone.now()
        fields.append("completed_at")
    session.save(update_fields=fields)
    audit.record(
        actor=actor,
        action=f"checkout_session.{to}",
        target=session,
        merchant=session.merchant_id and session.merchant,
        details={"from": previous, "reason": reason[:200]},
    )


def checkout_session_expire(*, actor: User | None, session: CheckoutSession) -> CheckoutSession:
    with transaction.atomic():
        locked = (
            CheckoutSession.objects.select_for_update(of=("self",))
            .select_related("merchant")
            .get(pk=session.pk)
        )
        _checkout_transition(locked, CheckoutSession.Status.EXPIRED, actor=actor, reason="expired by request")
    return locked


def _open_session(session_pk: int) -> CheckoutSession:
    session = (
        CheckoutSession.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=session_pk)
    )
    now = timezone.now()
    if session.status == CheckoutSession.Status.OPEN and now >= session.expires_at:
        _checkout_transition(session, CheckoutSession.Status.EXPIRED, actor=None, reason="expiry time passed")
    if session.status == CheckoutSession.Status.EXPIRED:
        raise ApplicationError(
            "This payment link has expired. Ask the merchant for a new one.", status_code=410
        )
    if session.status == CheckoutSession.Status.COMPLETE:
        raise Conflict("This payment link has already been paid.")
    if session.merchant.status == Merchant.Status.SUSPENDED:
        raise ApplicationError("This merchant cannot take payments at the moment.", status_code=403)
    return session


def payment_request_for(payment: Payment) -> PaymentRequest:
    customer_email = payment.customer.email if payment.customer_id and payment.customer else None
    return PaymentRequest(
        payment_id=payment.public_id,
        amount=payment.amount,
        currency=payment.currency,
        description=payment.description,
        customer_email=customer_email or None,
        merchant_account=payment.merchant_account or None,
        sca_mode=payment.sca_mode,  # type: ignore[arg-type]
        capture_method=payment.capture_method,  # type: ignore[arg-type]
    )


def payment_ref_for(payment: Payment) -> PaymentRef:
    if not payment.gateway_payment_id:
        raise ApplicationError("This payment never reached the gateway.", code="not_at_gateway")
    return PaymentRef(
        payment_id=payment.public_id,
        gateway_payment_id=payment.gateway_payment_id,
        currency=payment.currency,
        merchant_account=payment.merchant_account or None,
    )


@dataclass(frozen=True)
class CheckoutStart:
    payment: Payment
    client: ClientConfig


def checkout_begin(
    *, session: CheckoutSession, customer_ip: str | None = None, ip_country: str = "", _retried: bool = False
) -> CheckoutStart:
    """Open (or reopen) the payment behind a checkout page and get the card form's configuration.

    The amount and currency always come from the session, never from the browser.
    ``ip_country`` is the customer's country as a trusted proxy reported it (alpha-2).
    """
    with transaction.atomic():
        locked = _open_session(session.pk)
        payment = (
            Payment.objects.select_for_update()
            .filter(checkout_session=locked)
            .exclude(status__in=TERMINAL_PAYMENT)
            .order_by("-created_at")
            .first()
        )
        if payment is None:
            pay_settings = payment_settings_for(locked.merchant)
            account = (
                pay_settings.stripe_account
                if locked.gateway == "stripe"
                else pay_settings.braintree_merchant_account
                if locked.gateway == "braintree"
                else ""
            )
            decision = fraud.before_payment(
                merchant=locked.merchant,
                amount=locked.amount,
                currency=locked.currency,
                customer=locked.customer,
                ip=customer_ip,
                ip_country=ip_country,
            )
            payment = Payment.objects.create(
                merchant=locked.merchant,
                checkout_session=locked,
                customer=locked.customer,
                gateway=locked.gateway,
                mode=locked.mode,
                merchant_account=account,
                amount=locked.amount,
                currency=locked.currency,
                description=locked.description,
                sca_mode="any" if pay_settings.require_sca else "automatic",
                capture_method="manual" if decision.outcome == Payment.FraudOutcome.REVIEW else "automatic",
                customer_ip=customer_ip,
                ip_country=ip_country,
                fraud_outcome=decision.outcome,
                fraud_rules_fired=decision.fired,
            )
            _history(
                payment,
                PaymentEvent.Kind.CREATED,
                to_status=payment.status,
                source="checkout",
                message=f"Checkout opened for {money.format_minor(payment.amount, payment.currency)}",
            )
            if decision.fired:
                _history(
                    payment,
                    PaymentEvent.Kind.FRAUD,
                    source="fraud_rules",
                    message=f"Fraud rules: {decision.outcome}. {fraud.describe_fired(decision.fired)}",
                    data={"rules": [f.get("rule_id") for f in decision.fired]},
                )
            if decision.outcome == Payment.FraudOutcome.BLOCK:
                _transition(
                    payment,
                    S.FAILED,
                    source="fraud_rules",
                    actor=None,
                    message="Blocked by the merchant's fraud rules.",
                    fields={
                        "decline_code": "merchant_blocked",
                        "decline_message": "This payment was declined. Contact the merchant.",
                    },
                )
    if payment.status == S.FAILED and payment.decline_code == "merchant_blocked":
        raise ApplicationError(
            "This payment was declined. Contact the merchant.", code="blocked", status_code=402
        )
    gateway = registry.gateway_for(payment.gateway)
    request = payment_request_for(payment)
    if payment.gateway_payment_id:
        # The gateway's object exists: it is retrieved, never created again. A link lives up to
        # 30 days and Stripe forgets an idempotency key after 24 hours, so a create call would
        # then make a second PaymentIntent while we keep the first one's id.
        result = gateway.fetch_payment(payment_ref_for(payment))
        if result.status != payment.status and not _retried:
            # It moved on at the gateway (paid, or canceled) before its webhook reached us.
            payment_apply_gateway_state(payment=payment, result=result, source="checkout")
            payment.refresh_from_db()
            if payment.status in TERMINAL_PAYMENT:  # paid: the link is complete; canceled: start anew
                return checkout_begin(
                    session=session, customer_ip=customer_ip, ip_country=ip_country, _retried=True
                )
        return CheckoutStart(payment=payment, client=gateway.client_config(request, result))
    result = gateway.create_payment(request)
    if result.gateway_payment_id:
        Payment.objects.filter(pk=payment.pk, gateway_payment_id__isnull=True).update(
            gateway_payment_id=result.gateway_payment_id
        )
        payment.gateway_payment_id = result.gateway_payment_id
    return CheckoutStart(payment=payment, client=gateway.client_config(request, result))


def checkout_confirm(
    *,
    session: CheckoutSession,
    payment_method: str,
    customer_ip: str | None = None,
    ip_country: str = "",
    device_data: str | None = None,
    return_url: str | None = None,
) -> Payment:
    """Pay the session's open payment with a gateway token (Stripe pm_…, Braintree nonce)."""
    if not payment_method or len(payment_method) > 4096:
        raise ApplicationError("Choose a payment method.", code="missing_payment_method")
    start = checkout_begin(session=session, customer_ip=customer_ip, ip_country=ip_country)
    payment = start.payment
    gateway = registry.gateway_for(payment.gateway)
    if payment.confirm_outcome_unknown:
        # The last attempt's answer was lost: it may have charged the card. Ask first.
        earlier = gateway.find_payment(
            payment_request_for(payment), gateway_payment_id=payment.gateway_payment_id
        )
        if earlier is not None and earlier.status not in (S.FAILED, S.CANCELED, S.REQUIRES_PAYMENT_METHOD):
            payment_apply_gateway_state(payment=payment, result=earlier, source="checkout")
            Payment.objects.filter(pk=payment.pk).update(confirm_outcome_unknown=False)
            payment.refresh_from_db()
            return payment
        Payment.objects.filter(pk=payment.pk).update(confirm_outcome_unknown=False)
    with transaction.atomic():
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        if locked.status in TERMINAL_PAYMENT or locked.status == S.PROCESSING:
            return locked
        locked.attempts += 1
        update = ["attempts"]
        if ip_country and locked.ip_country != ip_country:
            # Where the card is used counts: the customer may have moved since checkout opened.
            locked.ip_country = ip_country
            update.append("ip_country")
        locked.save(update_fields=update)
    try:
        result = gateway.confirm_payment(
            payment_request_for(locked),
            payment_method=payment_method,
            gateway_payment_id=locked.gateway_payment_id,
            attempt=locked.attempts,
            return_url=return_url,
            device_data=device_data,
        )
    except GatewayError as exc:
        if exc.outcome_unknown:
            Payment.objects.filter(pk=locked.pk).update(confirm_outcome_unknown=True)
        raise
    payment_apply_gateway_state(payment=locked, result=result, source="checkout")
    if payment.gateway == "simulated":
        schedule_simulated_webhook(locked)
    locked.refresh_from_db()
    return locked


def simulated_challenge_complete(*, payment: Payment, approve: bool) -> Payment:
    """The customer finished the simulated 3D Secure challenge page."""
    from payments.gateways.simulated import SimulatedGateway

    gateway = registry.gateway_for("simulated")
    assert isinstance(gateway, SimulatedGateway)
    result = gateway.complete_challenge(
        payment.gateway_payment_id or "", approve=approve, merchant_account=payment.merchant_account or None
    )
    payment_apply_gateway_state(payment=payment, result=result, source="checkout")
    schedule_simulated_webhook(payment)
    payment.refresh_from_db()
    return payment


def schedule_simulated_webhook(payment: Payment) -> None:
    """The simulated gateway, like Stripe, tells us about the new state by webhook (via Celery)."""
    from payments import tasks

    if payment.gateway_payment_id:
        transaction.on_commit(lambda: tasks.deliver_simulated_webhook.delay(payment.pk))


# --- The payment state machine ------------------------------------------------------------------


def _history(
    payment: Payment,
    kind: str,
    *,
    from_status: str = "",
    to_status: str = "",
    message: str = "",
    source: str = "system",
    actor: Any = None,
    gateway_event_id: str = "",
    occurred_at: datetime | None = None,
    data: dict[str, Any] | None = None,
) -> PaymentEvent:
    return PaymentEvent.objects.create(
        payment=payment,
        merchant_id=payment.merchant_id,
        kind=kind,
        from_status=from_status,
        to_status=to_status,
        message=message[:300],
        source=source,
        actor_label=(getattr(actor, "email", None) or (actor if isinstance(actor, str) else ""))[:254],
        gateway_event_id=gateway_event_id,
        occurred_at=occurred_at or timezone.now(),
        data=data or {},
    )


def _transition(
    payment: Payment,
    to: str,
    *,
    source: str,
    actor: Any,
    message: str = "",
    gateway_event_id: str = "",
    occurred_at: datetime | None = None,
    fields: dict[str, Any] | None = None,
    gateway_status: str = "",
) -> None:
    """Move a locked payment along the table; raises IllegalTransition otherwise."""
    previous = payment.status
    previous_decline_code = payment.decline_code
    if not payment_move_allowed(previous, to, gateway_status=gateway_status):
        raise IllegalTransition(f"A payment cannot move from {previous} to {to}.")
    payment.status = to
    update = ["status", "updated_at", *(fields or {}).keys()]
    for name, value in (fields or {}).items():
        setattr(payment, name, value)
    if to == S.SUCCEEDED and not payment.succeeded_at:
        payment.succeeded_at = occurred_at or timezone.now()
        update.append("succeeded_at")
    payment.save(update_fields=sorted(set(update)))
    _history(
        payment,
        PaymentEvent.Kind.STATUS,
        from_status=previous,
        to_status=to,
        message=message,
        source=source,
        actor=actor,
        gateway_event_id=gateway_event_id,
        occurred_at=occurred_at,
    )
    signals.payment_status_changed.send(
        sender=Payment, payment=payment, previous=previous, status=to, source=source
    )
    audit.record(
        actor=actor,
        action="payment.status_changed",
        target=payment,
        merchant=payment.merchant_id and payment.merchant,
        details={"from": previous, "to": to, "source": source},
    )
    # After the audit event: every transaction takes the audit chain's head before any rollup
    # row, so a webhook batch (holding the head while it counts) and a single change never wait
    # on each other in a cycle.
    stats.payment_outcome_moved(
        payment=payment, previous_status=previous, previous_decline_code=previous_decline_code
    )
    if to == S.SUCCEEDED and payment.checkout_session_id:
        session = CheckoutSession.objects.select_for_update().get(pk=payment.checkout_session_id)
        if session.merchant_id == payment.merchant_id:
            session.merchant = payment.merchant  # already loaded: the audit event needs no second read
        if session.status == CheckoutSession.Status.OPEN:
            _checkout_transition(
                session, CheckoutSession.Status.COMPLETE, actor=None, reason=payment.public_id
            )


def _fields_from_gateway(payment: Payment, result: GatewayPayment, *, from_event: bool) -> dict[str, Any]:
    """``from_event``: ``result`` came in a gateway event, not as the answer to our own call. Which
    gateway object and account a payment is bound to is learnt only from our own calls."""
    fields: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        if value is not None and getattr(payment, name) != value:
            fields[name] = value

    if not from_event:
        if result.gateway_payment_id and not payment.gateway_payment_id:
            put("gateway_payment_id", result.gateway_payment_id)
        if result.merchant_account and not payment.merchant_account:
            # Braintree names the default merchant account a payment made without one went to.
            put("merchant_account", result.merchant_account[:64])
    put("amount_captured", result.amount_received if result.status == S.SUCCEEDED else None)
    if result.amount_refunded and result.amount_refunded > payment.amount_refunded:
        put("amount_refunded", result.amount_refunded)
    if result.status == S.FAILED:
        put("decline_code", (result.decline_code or "")[:64])
        put("decline_message", (result.decline_message or "")[:300])
    elif result.status in (S.SUCCEEDED, S.PROCESSING, S.REQUIRES_CAPTURE):
        put("decline_code", "")
        put("decline_message", "")
    if result.card:
        put("card_brand", (result.card.brand or "")[:20] or None)
        put("card_last4", (result.card.last4 or "")[:4] or None)
        put("card_country", (result.card.country or "")[:3] or None)
        put("card_fingerprint", (result.card.fingerprint or "")[:64] or None)
        put("card_bin", (result.card.bin or "")[:8] or None)
    if result.three_d_secure and result.three_d_secure.result:
        put("three_d_secure", result.three_d_secure.result[:32])
    if result.fraud:
        f = result.fraud
        put("risk_provider", (f.provider or "")[:20] or None)
        put("risk_type", (f.type or "")[:32] or None)
        put("risk_level", (f.risk_level or "")[:20] or None)
        put("risk_score", f.risk_score)
        put("risk_reason", (f.reason or "")[:64] or None)
        put("risk_rule", (f.rule or "")[:120] or None)
        put("seller_message", (f.seller_message or "")[:300] or None)
    return fields


@dataclass(frozen=True)
class ApplyResult:
    applied: bool
    ignored_reason: str = ""
    mismatch: str = ""  # why the gateway's state is not this payment's (nothing was written)


def _state_mismatch(payment: Payment, result: GatewayPayment) -> str:
    """Why ``result`` cannot be this payment's state ('' when it can).

    Another gateway object or another account than the payment's is never applied, and a
    payment becomes authorised or succeeded only for its own amount and currency.
    """
    ours = payment.gateway_payment_id
    if result.gateway_payment_id and ours and result.gateway_payment_id != ours:
        return f"the gateway's state is of {result.gateway_payment_id}, not {payment.public_id}'s {ours}"
    account = payment.merchant_account
    if result.merchant_account and account and result.merchant_account != account:
        return (
            f"the gateway's state is in account {result.merchant_account}, "
            f"not {payment.public_id}'s {payment.merchant_account}"
        )
    if result.status in (S.SUCCEEDED, S.REQUIRES_CAPTURE) and (
        (result.currency or "").upper() != payment.currency or result.amount != payment.amount
    ):
        return (
            f"the gateway's {result.status} payment is of {result.amount} {result.currency or '?'} "
            f"(minor units), not {payment.public_id}'s {payment.amount} {payment.currency}"
        )
    return ""


def payment_apply_gateway_state(
    *,
    payment: Payment,
    result: GatewayPayment,
    source: str,
    occurred_at: datetime | None = None,
    gateway_event_id: str = "",
    already_locked: bool = False,
) -> ApplyResult:
    """Bring our payment in line with what the gateway says, if that moves it forward.

    ``already_locked``: the caller holds the payment's row lock in the current transaction
    and passes that fresh instance (the webhook path), so it is not read again.
    """
    # Only a caller already inside a transaction can hold the lock (asked before opening ours).
    caller_locked = already_locked and transaction.get_connection().in_atomic_block
    with transaction.atomic():
        if caller_locked:
            locked = payment
        else:
            locked = (
                Payment.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=payment.pk)
            )
        if occurred_at and locked.last_event_at and occurred_at < locked.last_event_at:
            _history(
                locked,
                PaymentEvent.Kind.IGNORED,
                from_status=locked.status,
                to_status=result.status,
                message="Older than the state already applied; ignored.",
                source=source,
                gateway_event_id=gateway_event_id,
                occurred_at=occurred_at,
            )
            return ApplyResult(False, "stale")
        mismatch = _state_mismatch(locked, result)
        if mismatch:
            # Nothing is written to the payment. A gateway event's caller holds the event as
            # mismatched (and audits it); our own calls to the gateway are audited here.
            if source != "gateway":
                log.warning("gateway state not applied to %s: %s", locked.public_id, mismatch)
                audit.record(
                    actor=None,
                    action="payment.gateway_state_mismatched",
                    target=locked,
                    merchant=locked.merchant,
                    details={"source": source, "reason": mismatch[:200]},
                )
            return ApplyResult(False, "mismatch", mismatch)
        fields = _fields_from_gateway(locked, result, from_event=source == "gateway")
        if occurred_at:
            fields["last_event_at"] = occurred_at
        if result.status == locked.status:
            if fields:
                previous_decline_code = locked.decline_code
                for name, value in fields.items():
                    setattr(locked, name, value)
                locked.save(update_fields=[*fields.keys(), "updated_at"])
                # A new decline code on a payment that stays failed moves it between chart buckets.
                stats.payment_outcome_moved(
                    payment=locked, previous_status=locked.status, previous_decline_code=previous_decline_code
                )
                # The card or the risk assessment may arrive after the status (Stripe's webhooks
                # do not expand the charge): the fraud rules look again.
                fraud.after_gateway_result(payment=locked)
            return ApplyResult(True, "")
        if not payment_move_allowed(locked.status, result.status, gateway_status=result.gateway_status):
            _history(
                locked,
                PaymentEvent.Kind.IGNORED,
                from_status=locked.status,
                to_status=result.status,
                message=f"Cannot move from {locked.status} to {result.status}; ignored.",
                source=source,
                gateway_event_id=gateway_event_id,
                occurred_at=occurred_at,
            )
            return ApplyResult(False, "illegal")
        message = ""
        if result.status == S.FAILED and result.decline_message:
            message = result.decline_message
        if locked.status == S.SUCCEEDED and result.status == S.FAILED:
            # Settlement declined: the money never arrived, so nothing is captured any more.
            fields["amount_captured"] = 0
            message = f"Declined at settlement: the funds were not collected. {message}".strip()
        _transition(
            locked,
            result.status,
            source=source,
            actor=None,
            message=message,
            gateway_event_id=gateway_event_id,
            occurred_at=occurred_at,
            fields=fields,
            gateway_status=result.gateway_status,
        )
        fraud.after_gateway_result(payment=locked)
    return ApplyResult(True, "")


def payment_refetch(*, payment: Payment, source: str = "refetch") -> ApplyResult:
    """Ask the gateway for the payment's current state and apply it (raises GatewayError)."""
    gateway = registry.gateway_for(payment.gateway)
    result = gateway.fetch_payment(payment_ref_for(payment))
    return payment_apply_gateway_state(payment=payment, result=result, source=source)


# --- Review queue: capture or cancel held payments ---------------------------------------------


def payment_review_decide(
    *, actor: User, payment: Payment, approve: bool, reason: str, expect_status: str | None = None
) -> Payment:
    """A payment held for review is captured (approve) or canceled, with a reason.

    A payment flagged after it had already succeeded is kept (approve) or refunded in full.
    ``expect_status`` is the status the person saw: if the payment has moved since, nothing happens.
    """
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("Give a reason for the decision.", code="reason_required")
    if len(reason) > 300:
        raise ApplicationError("Keep the reason under 300 characters.", code="reason_too_long")
    with transaction.atomic():
        locked = Payment.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=payment.pk)
        if locked.review_status != Payment.Review.PENDING:
            raise Conflict("This payment is not waiting for review.")
        if expect_status and locked.status != expect_status:
            raise Conflict(
                f"This payment is now {locked.get_status_display().lower()}: "
                "look at it again before deciding."
            )
        if locked.status == S.SUCCEEDED:
            if approve:
                _review_close(locked, actor=actor, approve=True, message=f"Kept after review: {reason}")
                return locked
        elif locked.status != S.REQUIRES_CAPTURE:
            raise Conflict(
                f"This payment is {locked.get_status_display().lower()} and cannot be reviewed now."
            )
    if locked.status == S.SUCCEEDED:
        # Refunded in full (whatever is left, pending refunds counted as refund_create counts
        # them); the refund is audited on its own.
        if selectors.payment_refund_available(locked) > 0:
            refund_create(actor=actor, payment=locked, amount=None, reason=f"Fraud review: {reason}"[:300])
        with transaction.atomic():
            locked = (
                Payment.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=payment.pk)
            )
            if locked.review_status == Payment.Review.PENDING:
                _review_close(locked, actor=actor, approve=False, message=f"Refunded after review: {reason}")
        return locked
    gateway = registry.gateway_for(payment.gateway)
    ref = payment_ref_for(locked)
    result = gateway.capture_payment(ref) if approve else gateway.cancel_payment(ref)
    with transaction.atomic():
        locked = Payment.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=payment.pk)
        _review_close(
            locked,
            actor=actor,
            approve=approve,
            message=f"{'Captured' if approve else 'Canceled'} after review: {reason}",
        )
    payment_apply_gateway_state(payment=locked, result=result, source="user")
    if payment.gateway == "simulated":
        schedule_simulated_webhook(locked)
    locked.refresh_from_db()
    return locked


def _review_close(payment: Payment, *, actor: User, approve: bool, message: str) -> None:
    payment.review_status = Payment.Review.APPROVED if approve else Payment.Review.REJECTED
    payment.save(update_fields=["review_status", "updated_at"])
    _history(payment, PaymentEvent.Kind.REVIEW, message=message, source="user", actor=actor)
    audit.record(
        actor=actor,
        action="payment.review_approved" if approve else "payment.review_rejected",
        target=payment,
        merchant=payment.merchant,
        details={"reason": message[:200], "status": payment.status},
    )


# --- Refunds -------------------------------------------------------------------------------------


# Team roles that may refund: the role table's (a write key may too, within its creator's role).
REFUNDER_ROLES = merchant_roles.roles_allowed(merchant_roles.PAYMENTS_REFUND)


# A refund sent to the gateway whose answer never came (a timeout, an unreadable answer) stays
# pending and is looked for at the gateway before anything else is sent for that payment. One
# the gateway still has no record of this long after it was sent never got there: it fails.
REFUND_CONFIRM_GRACE = timedelta(minutes=10)
REFUND_NEVER_ARRIVED = "The payment provider has no record of this refund: nothing was refunded."


def refund_create(
    *,
    actor: User | None,
    payment: Payment,
    amount: int | None,
    reason: str,
    refund_public_id: str | None = None,
    via: str = "ui",
) -> Refund:
    """Refund all (``amount=None``) or part of a captured payment, through the gateway.

    Never more than captured, counting refunds still pending. Idempotent per
    ``refund_public_id``: submitting the same id again returns the same refund.

    The refund is committed as pending, with its id, before the gateway is called, so a
    refund whose answer is lost (a timeout, an unreadable answer) is kept, shown as pending
    and counted, and is settled from the gateway's answer, its webhook, the next refund
    request for the payment or ``reconcile_payments`` (see :func:`refund_settle`). A refusal
    the gateway states plainly removes the refund and raises: nothing was refunded.
    """
    if isinstance(actor, User) and not member_role_in(actor, payment.merchant_id, REFUNDER_ROLES):
        raise PermissionDeniedError("Only owners and admins can refund.")
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("Give a reason for the refund.", code="reason_required")
    if len(reason) > 300:
        raise ApplicationError("Keep the reason under 300 characters.")
    if refund_public_id:
        existing = Refund.objects.filter(public_id=refund_public_id).select_related("payment").first()
        if existing is not None:
            if existing.payment_id != payment.pk:
                raise Conflict("That refund id belongs to another payment.")
            return _refund_settle_quietly(existing, source=via)
    gateway = registry.gateway_for(payment.gateway)
    # Before another refund is sent, an earlier one whose answer was lost is looked for at the
    # gateway (Braintree keeps no idempotency key across it; Stripe's lasts 24 hours).
    for earlier in selectors.refunds_awaiting_confirmation(payment):
        settled = _refund_settle_quietly(earlier, source=via)
        if not settled.awaiting_confirmation:
            # The request may well be this refund sent again by someone who thought it lost:
            # it is refused once, with what became of the earlier one, rather than sent twice.
            outcome = (
                "was refunded"
                if settled.status in (Refund.Status.SUCCEEDED, Refund.Status.PENDING)
                else "was not refunded"
            )
            raise Conflict(
                f"An earlier refund of {money.format_minor(settled.amount, settled.currency)} on this "
                f"payment has just been confirmed with the payment provider: it {outcome}. "
                "Check the payment's refunds before refunding again.",
                code="refund_just_confirmed",
            )
    with transaction.atomic():
        locked = Payment.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=payment.pk)
        if locked.status != S.SUCCEEDED or locked.amount_captured <= 0:
            raise ApplicationError("Only a payment that succeeded can be refunded.", code="not_refundable")
        if selectors.refunds_awaiting_confirmation(locked).exists():
            raise Conflict(
                "An earlier refund of this payment is still being confirmed with the payment provider, "
                "so no other refund is sent until it is. Try again in a few minutes.",
                code="refund_unconfirmed",
            )
        succeeded, pending = selectors.payment_refund_totals(locked)
        already = selectors.payment_refund_committed(locked, succeeded=succeeded, pending=pending)
        available = locked.amount_captured - already
        if amount is None:
            if available <= 0:
                raise ApplicationError(
                    "Nothing is left to refund on this payment (refunds still pending count too).",
                    code="amount_too_large",
                )
            amount = available
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ApplicationError("The refund amount must be more than zero.", code="invalid_amount")
        if amount > available:
            raise ApplicationError(
                f"You can refund at most {money.format_minor(max(available, 0), locked.currency)} "
                "(refunds still pending count too).",
                code="amount_too_large",
            )
        refund = Refund(
            merchant=locked.merchant,
            payment=locked,
            amount=amount,
            currency=locked.currency,
            reason=reason,
            status=Refund.Status.PENDING,
            created_by=actor if isinstance(actor, User) else None,
            created_via=via,
        )
        if refund_public_id:
            refund.public_id = refund_public_id
        refund.save(force_insert=True)
        full = amount == locked.amount_captured and not already
        audit.record(
            actor=actor,
            action="refund.created",
            target=refund,
            merchant=locked.merchant,
            details={"payment": locked.public_id, "amount": amount, "currency": locked.currency, "via": via},
        )
    # Committed: the pending refund counts against what is left, so no other request can pass
    # the "at most what is left" check while this one is at the gateway (no lock is held there).
    try:
        result: GatewayRefund = gateway.refund_payment(
            payment_ref_for(locked), refund_id=refund.public_id, amount=None if full else amount, reason=None
        )
    except GatewayError as exc:
        if not exc.outcome_unknown:
            _refund_refused(refund, actor=actor, code=exc.code)
            raise
        log.warning("refund %s: the gateway's answer was lost (%s)", refund.public_id, exc.code)
        return _refund_sent(refund, None, actor=actor, via=via)
    except ApplicationError as exc:  # refused before anything was sent (say, a partial void)
        _refund_refused(refund, actor=actor, code=exc.code)
        raise
    except Exception:
        _refund_sent(refund, None, actor=actor, via=via)  # it may have happened: kept, settled later
        raise
    return _refund_sent(refund, result, actor=actor, via=via)


def _lock_refund(refund: Refund) -> Refund | None:
    """The refund's payment, then the refund, locked in that order (as the webhook path takes
    them); ``refund.payment`` and ``refund.merchant`` are the locked payment's."""
    payment = (
        Payment.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=refund.payment_id)
    )
    locked = Refund.objects.select_for_update().filter(pk=refund.pk).first()
    if locked is not None:
        locked.payment = payment
        if locked.merchant_id == payment.merchant_id:
            locked.merchant = payment.merchant
    return locked


def _refund_refused(refund: Refund, *, actor: User | None, code: str) -> None:
    """The gateway refused the refund in words we can read: nothing was refunded, so the
    pending row goes (an audit event keeps the attempt), unless the gateway has meanwhile
    told us otherwise (a webhook gave it the gateway's id)."""
    with transaction.atomic():
        locked = _lock_refund(refund)
        if locked is None or locked.gateway_refund_id or locked.status != Refund.Status.PENDING:
            return
        audit.record(
            actor=actor,
            action="refund.refused",
            target=locked,
            merchant=locked.merchant,
            details={"payment": locked.payment.public_id, "amount": locked.amount, "code": code},
        )
        locked.delete()


def _refund_sent(refund: Refund, result: GatewayRefund | None, *, actor: User | None, via: str) -> Refund:
    """Record what the gateway answered to the refund (``None``: the answer was lost)."""
    with transaction.atomic():
        locked = _lock_refund(refund)
        assert locked is not None  # only _refund_refused deletes, and never after this
        payment = locked.payment
        lost = " The payment provider's answer did not arrive: pending until it is confirmed."
        _history(
            payment,
            PaymentEvent.Kind.REFUND,
            message=f"Refund of {money.format_minor(locked.amount, locked.currency)} requested: "
            f"{locked.reason}" + ("" if result is not None else lost),
            source=via,
            actor=actor,
            data={"refund": locked.public_id},
        )
        signals.refund_created.send(sender=Refund, refund=locked)
        if result is not None:
            _refund_apply_state(locked, result, source="gateway")
    if result is not None and payment.gateway == "simulated":
        from payments import tasks

        transaction.on_commit(lambda: tasks.deliver_simulated_refund_webhook.delay(locked.pk))
    return locked


def _refund_apply_state(refund: Refund, state: GatewayRefund, *, source: str) -> None:
    """Bring a locked refund in line with the gateway's record of it (idempotent)."""
    if state.gateway_refund_id and not refund.gateway_refund_id:
        refund.gateway_refund_id = state.gateway_refund_id
        refund.method = state.method
        refund.save(update_fields=["gateway_refund_id", "method", "updated_at"])
    if state.status != Refund.Status.PENDING:
        _refund_transition(refund, state.status, failure_reason=state.failure_reason or "", source=source)


def refund_settle(*, refund: Refund, source: str = "reconcile", now: datetime | None = None) -> Refund:
    """Settle a pending refund from the gateway's record of it. Idempotent.

    A refund with the gateway's id is fetched; one whose answer was lost is looked for by our
    id (:meth:`~payments.gateways.base.PaymentGateway.find_refund`). Found, it takes the
    gateway's state; not found :data:`REFUND_CONFIRM_GRACE` after it was sent, it never got
    there and fails. Raises ``GatewayError`` when the gateway cannot be asked.
    """
    now = now or timezone.now()
    if refund.status != Refund.Status.PENDING:
        return refund
    payment = Payment.objects.get(pk=refund.payment_id)
    gateway = registry.gateway_for(payment.gateway)
    ref = payment_ref_for(payment)
    if refund.gateway_refund_id:
        state: GatewayRefund | None = gateway.fetch_refund(ref, refund.gateway_refund_id)
    else:
        state = gateway.find_refund(ref, refund_id=refund.public_id)
    with transaction.atomic():
        locked = _lock_refund(refund)
        if locked is None or locked.status != Refund.Status.PENDING:
            return locked or refund
        if state is not None:
            _refund_apply_state(locked, state, source=source)
        elif not locked.gateway_refund_id and now - locked.created_at >= REFUND_CONFIRM_GRACE:
            _refund_transition(
                locked, Refund.Status.FAILED, failure_reason=REFUND_NEVER_ARRIVED, source=source
            )
    return locked


def _refund_settle_quietly(refund: Refund, *, source: str) -> Refund:
    """:func:`refund_settle` for a refund awaiting confirmation; while the gateway cannot be
    asked it simply stays pending."""
    if not refund.awaiting_confirmation:
        return refund
    try:
        return refund_settle(refund=refund, source=source)
    except GatewayError as exc:
        log.warning("refund %s could not be looked up at the gateway: %s", refund.public_id, exc.code)
        return refund


def _refund_transition(refund: Refund, to: str, *, failure_reason: str = "", source: str = "gateway") -> bool:
    """Move a locked refund along its table. ``refund.payment`` is the payment its caller locked
    in the same transaction (``refund_create``, ``_apply_refund_event``): it is not read again."""
    if to == refund.status:
        return False
    if to not in REFUND_TRANSITIONS[refund.status]:
        _history(
            refund.payment,
            PaymentEvent.Kind.IGNORED,
            message=f"Refund {refund.public_id} cannot move from {refund.status} to {to}; ignored.",
            source=source,
        )
        return False
    previous = refund.status
    refund.status = to
    refund.failure_reason = failure_reason[:300]
    refund.save(update_fields=["status", "failure_reason", "updated_at"])
    payment = refund.payment
    succeeded, _ = selectors.payment_refund_totals(payment)
    if payment.amount_refunded != succeeded and (
        to == Refund.Status.SUCCEEDED or previous == Refund.Status.SUCCEEDED
    ):
        payment.amount_refunded = succeeded
        payment.save(update_fields=["amount_refunded", "updated_at"])
    _history(
        payment,
        PaymentEvent.Kind.REFUND,
        from_status=previous,
        to_status=to,
        message=f"Refund {refund.public_id} {to}" + (f": {failure_reason}" if failure_reason else ""),
        source=source,
        data={"refund": refund.public_id},
    )
    signals.refund_status_changed.send(sender=Refund, refund=refund, previous=previous, status=to)
    audit.record(
        actor=None,
        action=f"refund.{to}",
        target=refund,
        merchant=refund.merchant_id and refund.merchant,
        details={"from": previous},
    )
    return True


# --- Webhooks: ingest (verify, store, enqueue) and apply ------------------------------------------


@dataclass(frozen=True)
class Ingested:
    webhook_pk: int | None  # None for a redelivery: the first delivery's row is the one applied
    duplicate: bool


def _insert_webhook_event(row: WebhookEvent) -> int | None:
    """``INSERT ... ON CONFLICT (gateway, event_id) DO NOTHING RETURNING id`` in one statement.

    Returns the new row's id, or ``None`` when the event was stored before (a redelivery, also
    one racing the first delivery: the unique index makes it wait for that one and then skip).
    No transaction of its own, no read-back and nothing decrypted: the cheapest way to store
    an event exactly once. Values go through each field's own ``pre_save``/``get_db_prep_save``,
    so the payload is encrypted exactly as ``Model.save()`` would.
    """
    meta = WebhookEvent._meta
    connection = transaction.get_connection()
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    values = [f.get_db_prep_save(f.pre_save(row, True), connection) for f in fields]
    qn = connection.ops.quote_name
    unique = ", ".join(qn(f.column) for f in fields if f.name in ("gateway", "event_id"))
    sql = (
        f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "  # noqa: S608 - our own names
        f"VALUES ({', '.join(['%s'] * len(fields))}) "
        f"ON CONFLICT ({unique}) DO NOTHING RETURNING {qn(meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        found = cursor.fetchone()
    return int(found[0]) if found else None


def webhook_ingest(*, gateway: str, body: bytes, headers: dict[str, str]) -> Ingested:
    """Verify and store a webhook; the apply task is enqueued once the row is committed.

    Never calls the gateway's API, so webhooks are accepted even while it is down.
    Raises ``InvalidWebhook`` (400, nothing stored) on a bad signature, a stale
    timestamp or a malformed body. One database statement: a redelivery of a stored
    event inserts nothing and enqueues nothing (the first delivery's task applies it).
    """
    parser = registry.stripe_webhook_gateway() if gateway == "stripe" else registry.gateway_for(gateway)
    event = parser.parse_webhook(body, headers)
    row = WebhookEvent(
        gateway=event.gateway,
        event_id=event.event_id[:255],
        type=event.type[:80],
        object_id=(event.object_id or "")[:80],
        created_at_gateway=event.created,
        event=events_codec.encode(event),
    )
    pk = _insert_webhook_event(row)
    if pk is None:
        return Ingested(None, duplicate=True)
    from payments import tasks

    # Outside a transaction (a webhook request) this runs at once, the row being committed.
    # Usually one cache write: a drain task already running picks the new row up. If the
    # cache or broker is down the event is still stored and acknowledged (robust: logged,
    # not raised); the beat sweep schedules its drain within a minute.
    transaction.on_commit(tasks.schedule_webhook_drain, robust=True)
    return Ingested(pk, duplicate=False)


# Gateways whose payment notifications are only a pointer: Braintree's transaction in a
# notification is partial (a disbursement has no status and no currency) and its amount is
# not to be trusted for ours, so the transaction is fetched and the gateway's record applied.
# Applying retries (GatewayError is retryable) while the gateway is unreachable.
REFETCH_ON_PAYMENT_EVENT = frozenset({"braintree"})


class PaymentNotFoundYet(Exception):
    """The event names a payment we do not (yet) know; retried, then ignored."""


def _gateway_group(gateway: str) -> tuple[str, ...]:
    """The gateways whose payments an event may name: Stripe's webhook URL also carries the
    simulated gateway's events (the same Stripe-shaped ids), so those two are looked up together."""
    return ("stripe", "simulated") if gateway in ("stripe", "simulated") else (gateway,)


def _find_payment(event: GatewayEvent, *, lock: bool = False) -> Payment | None:
    qs = Payment.objects.select_related("merchant")
    if lock:
        qs = qs.select_for_update(of=("self",))
    gateway_names = _gateway_group(event.gateway)
    if event.gateway_payment_id:
        # Unique per gateway: no ORDER BY, so the planner goes straight to the unique index.
        found = list(
            qs.filter(gateway__in=gateway_names, gateway_payment_id=event.gateway_payment_id).order_by()[:1]
        )
        if found:
            return found[0]
    if event.payment_id:
        by_ours = qs.filter(public_id=event.payment_id, gateway__in=gateway_names).order_by()[:1]
        return next(iter(by_ours), None)
    return None


def webhook_apply(*, webhook_pk: int, give_up_on_missing: bool = False, skip_locked: bool = False) -> str:
    """Apply one stored webhook. Idempotent: an event already applied or ignored is left alone.

    Everything happens in one transaction that holds the stored event's row lock, so two
    workers handed the same event (a redelivered task, a manual retry) apply it once: the
    second waits for the first to commit and then finds it applied. A failed attempt rolls
    back whole (no half-applied event, no history row written twice) and is counted.

    Returns the final status (``"busy"`` with ``skip_locked`` when another worker holds the
    event). Raises ``GatewayError`` (retryable) when a re-fetch is needed and the gateway is
    unreachable, and ``PaymentNotFoundYet`` when the payment is unknown and
    ``give_up_on_missing`` is false. Any failure counts as an attempt.
    """
    try:
        with transaction.atomic():
            row = (
                WebhookEvent.objects.select_for_update(skip_locked=skip_locked).filter(pk=webhook_pk).first()
            )
            if row is None:
                if skip_locked and WebhookEvent.objects.filter(pk=webhook_pk).exists():
                    return "busy"
                raise WebhookEvent.DoesNotExist(webhook_pk)
            if row.status in WEBHOOK_EVENT_SETTLED:
                return row.status
            event = events_codec.decode(row.event)
            outcome, note, merchant = _apply_event(event, row, give_up_on_missing=give_up_on_missing)
            _webhook_event_settle(row, outcome, note=note, merchant=merchant)
            row.save(update_fields=WEBHOOK_EVENT_SETTLED_FIELDS)
    except WebhookEvent.DoesNotExist:
        raise
    except Exception as exc:
        WebhookEvent.objects.filter(pk=webhook_pk).update(
            attempts=F("attempts") + 1, last_error=f"{type(exc).__name__}: {exc}"[:300]
        )
        raise
    return outcome


def _webhook_event_settle(row: WebhookEvent, outcome: str, *, note: str, merchant: Merchant | None) -> None:
    """Move a locked stored event to ``applied``, ``ignored`` or ``mismatched`` along its table
    (one attempt more). ``merchant``: the merchant of the payment the event named.

    An applied or ignored event is not audited on its own: what it changed wrote its audit
    events in this transaction. A mismatched one changed nothing and is audited here, so the
    attempt on another merchant's payment is on the record.
    The caller saves the row (``save`` for one, ``bulk_update`` for a batch).
    """
    if outcome not in WEBHOOK_EVENT_TRANSITIONS[row.status] or outcome == WEBHOOK_EVENT_FAILED:
        raise IllegalTransition(f"A stored webhook cannot move from {row.status} to {outcome}.")
    previous = row.status
    row.status = outcome
    row.applied_at = timezone.now()
    row.last_error = note[:300]
    row.merchant = merchant
    row.attempts += 1
    if outcome == W.MISMATCHED:
        log.warning("gateway event %s held as mismatched: %s", row.event_id, note)
        audit.record(
            actor=None,
            action="webhook_event.mismatched",
            target=row,
            merchant=merchant,
            details={
                "from": previous,
                "gateway": row.gateway,
                "type": row.type,
                "event_id": row.event_id[:80],
                "reason": note[:200],
            },
        )


WEBHOOK_EVENT_SETTLED_FIELDS = ["status", "applied_at", "last_error", "merchant", "attempts"]


def _apply_payment_state(
    event: GatewayEvent, payment: Payment, state: GatewayPayment, *, already_locked: bool
) -> ApplyResult:
    return payment_apply_gateway_state(
        payment=payment,
        result=state,
        source="gateway",
        occurred_at=event.created,
        gateway_event_id=event.event_id,
        already_locked=already_locked,
    )


def _needs_refetch(result: ApplyResult, payment: Payment) -> bool:
    """An event that would move a payment still in flight the wrong way: order matters, ask the gateway."""
    return (
        not result.applied and result.ignored_reason == "illegal" and payment.status not in TERMINAL_PAYMENT
    )


@dataclass(frozen=True)
class BatchApplied:
    done: list[int]  # applied or ignored by the batch
    leftover: list[int]  # for ``webhook_apply``, one at a time


class _LeaveForSingleApply(Exception):
    """Inside a batch: roll this event back to its savepoint and let ``webhook_apply`` handle it."""


def _batchable(event: GatewayEvent) -> bool:
    """A payment event that carries the payment's state itself (no gateway call to apply it)."""
    return (
        event.known
        and event.kind == "payment"
        and event.payment is not None
        and bool(event.gateway_payment_id)
        and event.gateway not in REFETCH_ON_PAYMENT_EVENT
    )


def _lock_payments_for(events: list[GatewayEvent]) -> dict[tuple[str, str], Payment]:
    """The events' payments, locked in one statement in id order (so batches never deadlock on them),
    keyed like ``_find_payment`` looks them up; an id two payments share is left out."""
    wanted: dict[tuple[str, ...], set[str]] = {}
    for event in events:
        wanted.setdefault(_gateway_group(event.gateway), set()).add(event.gateway_payment_id or "")
    found: dict[tuple[str, str], Payment] = {}
    shared: set[tuple[str, str]] = set()
    for group, ids in wanted.items():
        locked = (
            Payment.objects.select_for_update(of=("self",))
            .select_related("merchant")
            .filter(gateway__in=group, gateway_payment_id__in=sorted(ids))
            .order_by("pk")
        )
        for payment in locked:
            key = (group[0], payment.gateway_payment_id or "")
            if key in found:
                shared.add(key)
            found[key] = payment
    return {key: payment for key, payment in found.items() if key not in shared}


def _payment_key(event: GatewayEvent) -> tuple[str, str]:
    return _gateway_group(event.gateway)[0], event.gateway_payment_id or ""


def webhook_apply_batch(*, webhook_pks: list[int]) -> BatchApplied:
    """Apply many stored webhooks in one transaction: the drain's common case, made cheap.

    The events' rows are locked in one statement (``SKIP LOCKED``: those another worker holds
    are neither done nor left over here), their payments in another, in id order. Only
    payment events that carry the payment's state and name a payment we know are applied
    here, oldest first, each through ``payment_apply_gateway_state`` in its own savepoint, so
    each writes its history, audit event and rollup exactly as alone. Everything else (refunds,
    disputes, unknown payments, an event that fails or that would need the gateway asked) is
    rolled back to its savepoint and returned in ``leftover`` for :func:`webhook_apply`, with
    every later event of the same payment, so one payment's events keep their order. The
    merchants' webhook endpoints and fraud rules are read once per batch (``batch_memo``).
    """
    leftover: list[int] = []
    done: list[WebhookEvent] = []
    with transaction.atomic():
        rows = list(
            WebhookEvent.objects.select_for_update(skip_locked=True)
            .filter(pk__in=webhook_pks, status=WebhookEvent.Status.RECEIVED)
            .order_by("created_at_gateway", "pk")
        )
        decoded = [(row, events_codec.decode(row.event)) for row in rows]
        payments = _lock_payments_for([event for _row, event in decoded if _batchable(event)])
        set_aside: set[tuple[str, str]] = set()
        with batch_memo.shared():
            for row, event in decoded:
                key = _payment_key(event)
                payment = payments.get(key) if _batchable(event) else None
                if payment is None or key in set_aside:
                    set_aside.add(key)  # the payment's later events stay behind this one
                    leftover.append(row.pk)
                    continue
                problem = _event_binding_problem(event, payment)
                if problem:
                    # Changes nothing: the payment's later events in this batch apply as usual.
                    _webhook_event_settle(row, W.MISMATCHED, note=problem, merchant=payment.merchant)
                    done.append(row)
                    continue
                try:
                    with transaction.atomic():
                        assert event.payment is not None  # for mypy: _batchable checked it
                        result = _apply_payment_state(event, payment, event.payment, already_locked=True)
                        if _needs_refetch(result, payment):
                            raise _LeaveForSingleApply
                except Exception:  # noqa: BLE001 - rolled back to its savepoint; retried alone, where it counts
                    set_aside.add(key)  # its in-memory payment may be ahead of the database now
                    leftover.append(row.pk)
                    continue
                outcome, note = _payment_outcome(result)
                _webhook_event_settle(row, outcome, note=note, merchant=payment.merchant)
                done.append(row)
        WebhookEvent.objects.bulk_update(done, WEBHOOK_EVENT_SETTLED_FIELDS)
    return BatchApplied([row.pk for row in done], leftover)


def webhook_event_fail(*, webhook_pk: int, reason: str) -> bool:
    """Give up on a stored webhook that could not be applied (a gateway error that will not pass).

    Only an event still waiting (or failed before) moves to ``failed``; one that another worker
    applied or ignored meanwhile keeps its status. Returns whether the event was marked failed.
    """
    with transaction.atomic():
        row = WebhookEvent.objects.select_for_update().filter(pk=webhook_pk).first()
        if row is None or WEBHOOK_EVENT_FAILED not in WEBHOOK_EVENT_TRANSITIONS[row.status]:
            return False
        previous = row.status
        row.status = WEBHOOK_EVENT_FAILED
        row.last_error = reason[:300]
        row.save(update_fields=["status", "last_error"])
        audit.record(
            actor=None,
            action="webhook_event.failed",
            target=row,
            merchant=row.merchant if row.merchant_id else None,
            details={"from": previous, "gateway": row.gateway, "type": row.type},
        )
    return True


def _apply_event(
    event: GatewayEvent, row: WebhookEvent, *, give_up_on_missing: bool
) -> tuple[str, str, Merchant | None]:
    applied, ignored, mismatched = W.APPLIED, W.IGNORED, W.MISMATCHED
    if not event.known or event.kind == "unknown":
        return ignored, f"unhandled event type {event.type}", None
    # A payment event from a gateway we trust as sent is applied under the lock taken here
    # (one read); one that needs a re-fetch first asks the gateway without holding it.
    # Refund and fraud-warning events lock the payment too, so it is read once, not again below.
    lock_now = (event.kind == "payment" and event.gateway not in REFETCH_ON_PAYMENT_EVENT) or event.kind in (
        "refund",
        "fraud_warning",
        "dispute",  # its amount at risk is written on the payment
    )
    payment = _find_payment(event, lock=lock_now)
    if payment is None and event.kind == "payment" and event.gateway in REFETCH_ON_PAYMENT_EVENT:
        # Braintree refunds are credit transactions: their settlement notifications name the
        # credit, not the sale. Ask Braintree for the credit and let the refund follow it.
        refund = (
            Refund.objects.select_related("payment__merchant")
            .filter(gateway_refund_id=event.gateway_payment_id, payment__gateway=event.gateway)
            .first()
        )
        if refund is not None:
            problem = _event_binding_problem(event, refund.payment)
            if problem:
                return mismatched, problem, refund.payment.merchant
            gateway = registry.gateway_for(refund.payment.gateway)
            credit = gateway.fetch_refund(payment_ref_for(refund.payment), refund.gateway_refund_id)
            outcome = _apply_refund_event(replace(event, kind="refund", refund=credit), refund.payment)
            return outcome, "", refund.payment.merchant
    if payment is None:
        if give_up_on_missing:
            return ignored, "no matching payment", None
        raise PaymentNotFoundYet(event.event_id)
    problem = _event_binding_problem(event, payment)
    if problem:
        return mismatched, problem, payment.merchant
    if not _names_our_object(event, payment):
        # Found only through the id the event echoes (metadata, order id): whatever else it
        # carries is about another gateway object. Ours is asked for by its own id instead.
        return mismatched, _refetch_instead_of(event, payment, already_locked=lock_now), payment.merchant
    if event.kind == "payment" and event.payment is not None:
        state = event.payment
        if event.gateway in REFETCH_ON_PAYMENT_EVENT:
            state = registry.gateway_for(payment.gateway).fetch_payment(payment_ref_for(payment))
        result = _apply_payment_state(event, payment, state, already_locked=lock_now)
        if _needs_refetch(result, payment):
            # Order matters here: ask the gateway what is true now.
            payment_refetch(payment=payment, source="gateway")
        outcome, note = _payment_outcome(result)
        return outcome, note, payment.merchant
    if event.kind == "refund":
        return _apply_refund_event(event, payment, already_locked=lock_now), "", payment.merchant
    if event.kind == "dispute" and event.dispute is not None:
        elsewhere = (
            Dispute.objects.filter(
                gateway=payment.gateway, gateway_dispute_id=event.dispute.gateway_dispute_id
            )
            .exclude(payment=payment)
            .values_list("payment__public_id", flat=True)
            .first()
        )
        if elsewhere:
            note = f"dispute {event.dispute.gateway_dispute_id} is {elsewhere}'s, not {payment.public_id}'s"
            return mismatched, note, payment.merchant
        return _apply_dispute(event, event.dispute, payment), "", payment.merchant
    if event.kind == "fraud_warning":
        with transaction.atomic():
            locked = payment if lock_now else Payment.objects.select_for_update().get(pk=payment.pk)
            if not locked.early_fraud_warning:
                locked.early_fraud_warning = True
                locked.save(update_fields=["early_fraud_warning", "updated_at"])
                _history(
                    locked,
                    PaymentEvent.Kind.FRAUD,
                    source="gateway",
                    gateway_event_id=event.event_id,
                    occurred_at=event.created,
                    message="Early fraud warning from the card issuer: consider refunding before a dispute.",
                )
        return applied, "", payment.merchant
    return ignored, f"nothing to apply for {event.type}", payment.merchant


def _payment_outcome(result: ApplyResult) -> tuple[str, str]:
    """The stored event's status and note after its payment state was offered to the payment."""
    if result.mismatch:
        return W.MISMATCHED, result.mismatch
    return (W.APPLIED if result.applied else W.IGNORED), result.ignored_reason


def _event_binding_problem(event: GatewayEvent, payment: Payment) -> str:
    """Why a verified event may not touch ``payment`` ('' when it may).

    A signature proves only that the gateway sent the event, not that it is about this payment:
    every connected account's (Stripe) and merchant account's (Braintree) events reach the one
    endpoint. The event must come from the payment's mode and the payment's account, and what
    it says about money must be in the payment's currency and within its amount.
    """
    mode = "live" if event.livemode else "test"
    if mode != payment.mode:
        return f"a {mode}-mode event names {payment.public_id}, a {payment.mode}-mode payment"
    if event.account_known and (event.account or "") != (payment.merchant_account or ""):
        return (
            f"an event of account {event.account or '(platform)'} names {payment.public_id}, "
            f"of account {payment.merchant_account or '(platform)'}"
        )
    claims: list[tuple[int | None, str | None]] = []
    if event.kind == "refund":
        refund = event.refund
        claims.append((refund.amount, refund.currency) if refund else (event.amount_refunded, event.currency))
    elif event.kind == "dispute" and event.dispute is not None:
        claims.append((event.dispute.amount, event.dispute.currency))
    for amount, currency in claims:
        if currency and currency.upper() != payment.currency:
            return f"an event in {currency.upper()} names {payment.public_id}, a {payment.currency} payment"
        if amount is not None and amount > payment.amount:
            return (
                f"an event for {amount} {payment.currency} (minor units) names {payment.public_id}, "
                f"a payment of {payment.amount}"
            )
    return ""


def _names_our_object(event: GatewayEvent, payment: Payment) -> bool:
    """Whether the event is about the gateway object we stored for ``payment`` (not found only
    through the payment id it echoes in its metadata or order id)."""
    return bool(event.gateway_payment_id) and event.gateway_payment_id == payment.gateway_payment_id


def _refetch_instead_of(event: GatewayEvent, payment: Payment, *, already_locked: bool) -> str:
    """The event named ``payment`` only through its metadata: nothing it carries is applied.
    Our own gateway object is fetched by the id we stored and its state applied (what is
    true moves the payment, if anything does). Returns the reason the event is held."""
    named = f"an event about {event.gateway_payment_id or 'another object'} names {payment.public_id}"
    if not payment.gateway_payment_id:
        return f"{named} in its metadata only; the payment has no gateway id of ours to check it by"
    state = registry.gateway_for(payment.gateway).fetch_payment(payment_ref_for(payment))
    result = payment_apply_gateway_state(
        payment=payment, result=state, source="refetch", already_locked=already_locked
    )
    return (
        f"{named} in its metadata only, not our {payment.gateway_payment_id}; that was re-fetched by its "
        f"own id ({'applied' if result.applied else result.mismatch or result.ignored_reason or 'unchanged'})"
    )


def _apply_refund_event(event: GatewayEvent, payment: Payment, *, already_locked: bool = False) -> str:
    """``already_locked``: the caller holds the payment's row lock in this transaction (as in
    ``payment_apply_gateway_state``), so the fresh instance it passes is not read again."""
    caller_locked = already_locked and transaction.get_connection().in_atomic_block
    with transaction.atomic():
        if caller_locked:
            locked = payment
        else:
            locked = Payment.objects.select_for_update(of=("self",)).get(pk=payment.pk)
        if event.refund is None:
            # charge.refunded: the charge's running total; refunds made outside fintech_portal count too.
            if event.amount_refunded is not None and event.amount_refunded > locked.amount_refunded:
                locked.amount_refunded = min(event.amount_refunded, locked.amount_captured or locked.amount)
                locked.save(update_fields=["amount_refunded", "updated_at"])
                _history(
                    locked,
                    PaymentEvent.Kind.REFUND,
                    source="gateway",
                    gateway_event_id=event.event_id,
                    occurred_at=event.created,
                    message="Gateway reports "
                    f"{money.format_minor(locked.amount_refunded, locked.currency)} refunded.",
                )
            return WebhookEvent.Status.APPLIED
        gr = event.refund
        refund = Refund.objects.select_for_update().filter(
            payment=locked, gateway_refund_id=gr.gateway_refund_id
        ).first() or (
            Refund.objects.select_for_update().filter(payment=locked, public_id=gr.refund_id).first()
            if gr.refund_id
            else None
        )
        if refund is None:
            refund = Refund.objects.create(
                merchant_id=locked.merchant_id,
                payment=locked,
                amount=gr.amount,
                currency=gr.currency,
                reason="Refunded at the gateway",
                gateway_refund_id=gr.gateway_refund_id,
                method=gr.method,
                created_via="gateway",
            )
        elif not refund.gateway_refund_id:
            refund.gateway_refund_id = gr.gateway_refund_id
            refund.save(update_fields=["gateway_refund_id"])
        refund.payment = locked
        if refund.merchant_id == locked.merchant_id and Payment.merchant.is_cached(locked):
            refund.merchant = locked.merchant
        changed = _refund_transition(refund, gr.status, failure_reason=gr.failure_reason or "")
    return (
        WebhookEvent.Status.APPLIED if changed or refund.status == gr.status else WebhookEvent.Status.IGNORED
    )


def _apply_dispute(event: GatewayEvent, gd: GatewayDispute, payment: Payment) -> str:
    with transaction.atomic():
        dispute = (
            Dispute.objects.select_for_update()
            .filter(gateway=payment.gateway, gateway_dispute_id=gd.gateway_dispute_id)  # unique per gateway
            .first()
        )
        if dispute is None:
            dispute = Dispute.objects.create(
                merchant_id=payment.merchant_id,
                payment=payment,
                gateway=payment.gateway,
                gateway_dispute_id=gd.gateway_dispute_id,
                amount=gd.amount if gd.amount is not None else payment.amount,
                currency=gd.currency or payment.currency,
                reason=(gd.reason or "")[:64],
                status=D.NEEDS_RESPONSE,
                evidence_due_by=gd.evidence_due_by,
                last_event_at=event.created,
            )
            _history(
                payment,
                PaymentEvent.Kind.DISPUTE,
                to_status=dispute.status,
                source="gateway",
                gateway_event_id=event.event_id,
                occurred_at=event.created,
                message=f"Dispute opened ({dispute.reason or 'no reason given'}) for "
                f"{money.format_minor(dispute.amount, dispute.currency)}.",
            )
            audit.record(actor=None, action="dispute.opened", target=dispute, merchant=payment.merchant)
            stats.dispute_opened(dispute=dispute)  # after the audit head, as in _transition
        elif dispute.last_event_at and event.created < dispute.last_event_at:
            _history(
                payment,
                PaymentEvent.Kind.IGNORED,
                source="gateway",
                gateway_event_id=event.event_id,
                occurred_at=event.created,
                message="Older dispute update; ignored.",
            )
            return WebhookEvent.Status.IGNORED
        status = gd.status if gd.status in DISPUTE_TRANSITIONS else D.NEEDS_RESPONSE
        if status != dispute.status:
            if status not in DISPUTE_TRANSITIONS[dispute.status]:
                _history(
                    payment,
                    PaymentEvent.Kind.IGNORED,
                    source="gateway",
                    gateway_event_id=event.event_id,
                    occurred_at=event.created,
                    message=f"Dispute cannot move from {dispute.status} to {status}.",
                )
                return WebhookEvent.Status.IGNORED
            previous = dispute.status
            dispute.status = status
            if status in (D.WON, D.LOST, D.CLOSED):
                dispute.closed_at = event.created
            _history(
                payment,
                PaymentEvent.Kind.DISPUTE,
                from_status=previous,
                to_status=status,
                source="gateway",
                gateway_event_id=event.event_id,
                occurred_at=event.created,
                message=f"Dispute {status}.",
            )
            audit.record(
                actor=None,
                action=f"dispute.{status}",
                target=dispute,
                merchant=payment.merchant,
                details={"from": previous},
            )
        if gd.evidence_due_by:
            dispute.evidence_due_by = gd.evidence_due_by
        dispute.last_event_at = event.created
        dispute.save(update_fields=["status", "closed_at", "evidence_due_by", "last_event_at"])
        at_risk = (
            Dispute.objects.filter(payment=payment, status__in=[*Dispute.OPEN_STATUSES, D.LOST]).aggregate(
                total=Sum("amount")
            )["total"]
            or 0
        )
        if at_risk != payment.amount_disputed:
            payment.amount_disputed = at_risk
            payment.save(update_fields=["amount_disputed", "updated_at"])
    return WebhookEvent.Status.APPLIED


# --- Reconciliation -------------------------------------------------------------------------------


def refunds_reconcile(*, since: timedelta, now: datetime | None = None) -> dict[str, int]:
    """Settle refunds still pending (created within ``since``) from their gateway's record."""
    now = now or timezone.now()
    stuck = (
        Refund.objects.filter(status=Refund.Status.PENDING, created_at__gte=now - since)
        .exclude(payment__gateway_payment_id__isnull=True)
        .order_by("created_at", "pk")
    )
    counts = {"checked": 0, "settled": 0, "errors": 0}
    for refund in stuck.iterator():
        counts["checked"] += 1
        try:
            settled = refund_settle(refund=refund, source="reconcile", now=now)
        except GatewayError as exc:
            counts["errors"] += 1
            log.warning("reconcile: refund %s could not be looked up: %s", refund.public_id, exc.code)
            continue
        counts["settled"] += settled.status != Refund.Status.PENDING
    return counts


def payments_reconcile(*, since: timedelta, now: datetime | None = None) -> dict[str, int]:
    """Re-fetch payments stuck in processing or requires_action and fix their state."""
    now = now or timezone.now()
    stuck = Payment.objects.filter(
        status__in=[S.PROCESSING, S.REQUIRES_ACTION],
        updated_at__gte=now - since,
        gateway_payment_id__isnull=False,
    ).order_by("updated_at")
    counts = {"checked": 0, "changed": 0, "errors": 0}
    for payment in stuck.iterator():
        counts["checked"] += 1
        before = payment.status
        try:
            payment_refetch(payment=payment, source="reconcile")
        except GatewayError as exc:
            counts["errors"] += 1
            log.warning("reconcile: %s could not be fetched: %s", payment.public_id, exc.code)
            continue
        payment.refresh_from_db(fields=["status"])
        counts["changed"] += payment.status != before
    return counts
