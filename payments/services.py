"""Writes for checkout sessions, payments, refunds, disputes and gateway webhooks.

The rules every function here keeps:

* Status fields move only through the transition tables below. A move the table
  does not allow is recorded as an ignored event and changes nothing.
* An event older than the newest one already applied to an object is recorded
  and ignored (``last_event_at``). When a payment event cannot be applied because
  order matters, the payment is re-fetched from the gateway and that state wins.
* One transaction per action: the row is locked, the status saved with
  ``update_fields``, a history row and an audit event written together.
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
# touches an event already applied or ignored.
WEBHOOK_EVENT_TRANSITIONS: dict[str, frozenset[str]] = {
    W.RECEIVED: frozenset({W.APPLIED, W.IGNORED, W.FAILED}),
    W.FAILED: frozenset({W.APPLIED, W.IGNORED, W.FAILED}),
    W.APPLIED: frozenset(),
    W.IGNORED: frozenset(),
}
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
    *, session: CheckoutSession, customer_ip: str | None = None, ip_country: str = ""
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
    result = gateway.create_payment(request)
    if not payment.gateway_payment_id and result.gateway_payment_id:
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
    gateway = registry.gateway_for(payment.gateway)
    result = gateway.confirm_payment(
        payment_request_for(locked),
        payment_method=payment_method,
        gateway_payment_id=locked.gateway_payment_id,
        attempt=locked.attempts,
        return_url=return_url,
        device_data=device_data,
    )
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


def _fields_from_gateway(payment: Payment, result: GatewayPayment) -> dict[str, Any]:
    fields: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        if value is not None and getattr(payment, name) != value:
            fields[name] = value

    if result.gateway_payment_id and not payment.gateway_payment_id:
        put("gateway_payment_id", result.gateway_payment_id)
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
        fields = _fields_from_gateway(locked, result)
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
            return existing
    with transaction.atomic():
        locked = Payment.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=payment.pk)
        if locked.status != S.SUCCEEDED or locked.amount_captured <= 0:
            raise ApplicationError("Only a payment that succeeded can be refunded.", code="not_refundable")
        succeeded, pending = selectors.payment_refund_totals(locked)
        already = selectors.payment_refund_committed(locked, succeeded=succeeded, pending=pending)
        available = locked.amount_captured - already
        if amount is None:
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
            created_by=actor if isinstance(actor, User) else None,
            created_via=via,
        )
        if refund_public_id:
            refund.public_id = refund_public_id
        refund.save(force_insert=True)
        # The gateway is called while the payment is locked, so two refunds can never
        # both pass the "at most what is left" check; the refund id makes it idempotent.
        gateway = registry.gateway_for(locked.gateway)
        full = amount == locked.amount_captured and not already
        result: GatewayRefund = gateway.refund_payment(
            payment_ref_for(locked), refund_id=refund.public_id, amount=None if full else amount, reason=None
        )
        refund.gateway_refund_id = result.gateway_refund_id
        refund.method = result.method
        refund.save(update_fields=["gateway_refund_id", "method"])
        _history(
            locked,
            PaymentEvent.Kind.REFUND,
            message=f"Refund of {money.format_minor(amount, locked.currency)} requested: {reason}",
            source=via,
            actor=actor,
            data={"refund": refund.public_id},
        )
        audit.record(
            actor=actor,
            action="refund.created",
            target=refund,
            merchant=locked.merchant,
            details={"payment": locked.public_id, "amount": amount, "currency": locked.currency, "via": via},
        )
        signals.refund_created.send(sender=Refund, refund=refund)
        if result.status != Refund.Status.PENDING:
            _refund_transition(
                refund, result.status, failure_reason=result.failure_reason or "", source="gateway"
            )
    if locked.gateway == "simulated":
        from payments import tasks

        transaction.on_commit(lambda: tasks.deliver_simulated_refund_webhook.delay(refund.pk))
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
            if row.status in (WebhookEvent.Status.APPLIED, WebhookEvent.Status.IGNORED):
                return row.status
            event = events_codec.decode(row.event)
            outcome, note, merchant_id = _apply_event(event, row, give_up_on_missing=give_up_on_missing)
            _webhook_event_settle(row, outcome, note=note, merchant_id=merchant_id)
            row.save(update_fields=WEBHOOK_EVENT_SETTLED_FIELDS)
    except WebhookEvent.DoesNotExist:
        raise
    except Exception as exc:
        WebhookEvent.objects.filter(pk=webhook_pk).update(
            attempts=F("attempts") + 1, last_error=f"{type(exc).__name__}: {exc}"[:300]
        )
        raise
    return outcome


def _webhook_event_settle(row: WebhookEvent, outcome: str, *, note: str, merchant_id: int | None) -> None:
    """Move a locked stored event to ``applied`` or ``ignored`` along its table (one attempt more).

    Not audited on its own: what the event changed wrote its audit events in this transaction.
    The caller saves the row (``save`` for one, ``bulk_update`` for a batch).
    """
    if outcome not in WEBHOOK_EVENT_TRANSITIONS[row.status] or outcome == WEBHOOK_EVENT_FAILED:
        raise IllegalTransition(f"A stored webhook cannot move from {row.status} to {outcome}.")
    row.status = outcome
    row.applied_at = timezone.now()
    row.last_error = note[:300]
    row.merchant_id = merchant_id
    row.attempts += 1


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
                outcome = WebhookEvent.Status.APPLIED if result.applied else WebhookEvent.Status.IGNORED
                _webhook_event_settle(
                    row, outcome, note=result.ignored_reason, merchant_id=payment.merchant_id
                )
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
) -> tuple[str, str, int | None]:
    applied, ignored = WebhookEvent.Status.APPLIED, WebhookEvent.Status.IGNORED
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
            Refund.objects.select_related("payment")
            .filter(gateway_refund_id=event.gateway_payment_id, payment__gateway=event.gateway)
            .first()
        )
        if refund is not None:
            gateway = registry.gateway_for(refund.payment.gateway)
            state = gateway.fetch_refund(payment_ref_for(refund.payment), refund.gateway_refund_id)  # type: ignore[attr-defined]
            outcome = _apply_refund_event(replace(event, kind="refund", refund=state), refund.payment)
            return outcome, "", refund.merchant_id
    if payment is None:
        if give_up_on_missing:
            return ignored, "no matching payment", None
        raise PaymentNotFoundYet(event.event_id)
    if event.kind == "payment" and event.payment is not None:
        state = event.payment
        if event.gateway in REFETCH_ON_PAYMENT_EVENT:
            state = registry.gateway_for(payment.gateway).fetch_payment(payment_ref_for(payment))
        result = _apply_payment_state(event, payment, state, already_locked=lock_now)
        if _needs_refetch(result, payment):
            # Order matters here: ask the gateway what is true now.
            payment_refetch(payment=payment, source="gateway")
        return (applied if result.applied else ignored), result.ignored_reason, payment.merchant_id
    if event.kind == "refund":
        return _apply_refund_event(event, payment, already_locked=lock_now), "", payment.merchant_id
    if event.kind == "dispute" and event.dispute is not None:
        return _apply_dispute(event, event.dispute, payment), "", payment.merchant_id
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
        return applied, "", payment.merchant_id
    return ignored, f"nothing to apply for {event.type}", payment.merchant_id


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
