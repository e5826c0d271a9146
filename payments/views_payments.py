"""A payment's page: its timeline, refunds and disputes, and the refund form."""

from __future__ import annotations

import re

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from accounts.merchant_roles import PAYMENTS_REFUND, PAYMENTS_REVIEW, PAYMENTS_VIEW, role_can
from accounts.otp import require_recent_otp
from accounts.permissions import merchant_member_required
from payments import money, selectors, services
from payments.countdown import Countdown, countdown
from payments.forms import RefundForm
from payments.gateways.base import GatewayError
from payments.models import Dispute, Payment
from security.errors import ApplicationError
from security.ids import new_public_id

# The review form's buttons: (approve, the status the decision is meant for).
REVIEW_DECISIONS: dict[str, tuple[bool, str]] = {
    "capture": (True, Payment.Status.REQUIRES_CAPTURE),
    "cancel": (False, Payment.Status.REQUIRES_CAPTURE),
    "keep": (True, Payment.Status.SUCCEEDED),
    "refund": (False, Payment.Status.SUCCEEDED),
}


def _payment(request: HttpRequest, public_id: str) -> Payment:
    payment = selectors.payment_for(request.membership.merchant, public_id)  # type: ignore[attr-defined]
    if payment is None:
        raise Http404("No such payment.")
    return payment


def _refund_id(value: str) -> str | None:
    """The form's one-time refund id (makes a double submit idempotent), if well-formed."""
    return value if re.fullmatch(r"re_[A-Za-z0-9]{24}", value or "") else None


def _disputes_with_countdowns(payment: Payment) -> list[tuple[Dispute, Countdown | None]]:
    """The payment's disputes, newest first, each with its evidence countdown while it is open."""
    now = timezone.now()
    return [
        (d, countdown(d.evidence_due_by, now) if d.status in Dispute.OPEN_STATUSES else None)
        for d in payment.disputes.order_by("-created_at")
    ]


def _detail_context(request: HttpRequest, payment: Payment, form: RefundForm | None = None) -> dict:
    role = request.membership.role  # type: ignore[attr-defined]
    can_refund = role_can(role, PAYMENTS_REFUND)
    # Pending refunds count: the form offers what the refund service will accept.
    available = selectors.payment_refund_available(payment)
    return {
        "payment": payment,
        "timeline": selectors.payment_timeline(payment),
        "refunds": selectors.refunds_for_payment(payment),
        "disputes": _disputes_with_countdowns(payment),
        "can_review": role_can(role, PAYMENTS_REVIEW),
        "can_refund": can_refund and payment.status == Payment.Status.SUCCEEDED and available > 0,
        "form": form or RefundForm(initial={"refund_id": new_public_id("re")}),
        "refundable_display": money.format_minor(available, payment.currency),
    }


@merchant_member_required(PAYMENTS_VIEW)
def payment_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    payment = _payment(request, public_id)
    return render(request, "payments/payment_detail.html", _detail_context(request, payment))


@merchant_member_required(PAYMENTS_REFUND)
@require_POST
@require_recent_otp(minutes=5)
def refund_create(request: HttpRequest, public_id: str) -> HttpResponse:
    payment = _payment(request, public_id)
    form = RefundForm(request.POST)
    if form.is_valid():
        raw = (form.cleaned_data["amount"] or "").strip()
        try:
            amount = money.to_minor(raw, payment.currency) if raw else None
            refund = services.refund_create(
                actor=request.user,
                payment=payment,
                amount=amount,
                reason=form.cleaned_data["reason"],
                refund_public_id=_refund_id(form.cleaned_data["refund_id"]),
            )
        except GatewayError as exc:
            form.add_error(None, exc.user_message)
        except ApplicationError as exc:
            form.add_error(
                "amount" if exc.code in ("invalid_amount", "amount_too_large") else None, exc.message
            )
        else:
            shown = money.format_minor(refund.amount, refund.currency)
            if refund.awaiting_confirmation:
                messages.warning(
                    request,
                    f"Refund of {shown}: pending. The payment provider's answer did not arrive, so it "
                    "shows as pending until we have confirmed it with them. It will not be sent twice.",
                )
            else:
                messages.success(request, f"Refund of {shown}: {refund.get_status_display().lower()}.")
            return redirect("payment_detail", public_id=public_id)
    payment.refresh_from_db()
    return render(
        request, "payments/payment_detail.html", _detail_context(request, payment, form), status=400
    )


@merchant_member_required(PAYMENTS_REVIEW)
@require_http_methods(["POST"])
@require_recent_otp(minutes=5)
def review_decide(request: HttpRequest, public_id: str) -> HttpResponse:
    payment = _payment(request, public_id)
    decision = REVIEW_DECISIONS.get(request.POST.get("decision", ""))
    if decision is None:
        messages.error(request, "Choose what to do with the payment.")
        return redirect("payment_detail", public_id=public_id)
    approve, expect_status = decision
    try:
        services.payment_review_decide(
            actor=request.user,
            payment=payment,
            approve=approve,
            reason=request.POST.get("reason", ""),
            expect_status=expect_status,
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Decision recorded.")
    return redirect("payment_detail", public_id=public_id)
