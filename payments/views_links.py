"""Merchant pages for payment links (checkout sessions)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.merchant_roles import LINKS_MANAGE, PAYMENTS_VIEW, refusal, role_can
from accounts.permissions import merchant_member_required
from payments import selectors, services
from payments.forms import CheckoutSessionForm
from security.errors import ApplicationError

PAGE = 50


def _can_manage(request: HttpRequest) -> bool:
    return role_can(request.membership.role, LINKS_MANAGE)  # type: ignore[attr-defined]


def _require_manager(request: HttpRequest) -> None:
    """Everyone on the team sees the links; making and expiring them follows the role table."""
    if request.method == "POST" and not _can_manage(request):
        raise PermissionDenied(refusal(request.membership.role, LINKS_MANAGE))  # type: ignore[attr-defined]


@merchant_member_required(PAYMENTS_VIEW)
@require_http_methods(["GET", "POST"])
def links(request: HttpRequest) -> HttpResponse:
    _require_manager(request)
    merchant = request.membership.merchant  # type: ignore[attr-defined]
    form = CheckoutSessionForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                session = services.checkout_session_create(
                    actor=request.user,
                    merchant=merchant,
                    amount=form.cleaned_data["amount_minor"],
                    currency=form.cleaned_data["currency"],
                    description=form.cleaned_data["description"],
                    customer_email=form.cleaned_data["customer_email"],
                    expires_in=form.cleaned_data["expires_in"],
                )
            except ApplicationError as exc:
                form.add_error(None, exc.message)
                status = 400
            else:
                messages.success(request, "Payment link created. Share it with your customer.")
                return redirect("payment_link_detail", public_id=session.public_id)
        else:
            status = 400
    sessions = selectors.checkout_sessions_for(merchant).order_by("-created_at", "-id")[:PAGE]
    return render(
        request,
        "payments/links.html",
        {"form": form, "sessions": sessions, "can_manage": _can_manage(request)},
        status=status,
    )


@merchant_member_required(PAYMENTS_VIEW)
@require_http_methods(["GET", "POST"])
def link_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    _require_manager(request)
    merchant = request.membership.merchant  # type: ignore[attr-defined]
    session = selectors.checkout_session_for(merchant, public_id)
    if session is None:
        raise Http404("No such payment link.")
    if request.method == "POST":
        try:
            services.checkout_session_expire(actor=request.user, session=session)
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, "The link no longer accepts payments.")
        return redirect("payment_link_detail", public_id=public_id)
    return render(
        request,
        "payments/link_detail.html",
        {
            "session": session,
            "url": request.build_absolute_uri(f"/pay/{session.public_id}/"),
            "payments": session.payments.order_by("-created_at")[:20],
            "can_manage": _can_manage(request),
        },
    )
