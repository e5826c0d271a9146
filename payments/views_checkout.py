"""The public checkout pages: ``/pay/<id>/`` and what follows it.

Card numbers never reach us: Stripe's Payment Element and Braintree's Drop-in
collect them in the vendors' frames and give us a token; the simulated gateway
uses Stripe's named test PaymentMethods. The amount and currency always come
from the checkout session on the server.
"""

from __future__ import annotations

import contextlib

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from payments import countries, money, selectors, services
from payments.checkout_limits import checkout_rate_limited
from payments.gateways.base import GatewayError
from payments.gateways.simulated import CARDS
from payments.models import CheckoutSession, Payment
from security.client_ip import client_ip
from security.errors import ApplicationError

# Third-party origins allowed on checkout pages only (and only for the gateway in use).
GATEWAY_CSP: dict[str, dict[str, list[str]]] = {
    "stripe": {
        "script-src": ["https://js.stripe.com"],
        "frame-src": ["https://js.stripe.com", "https://hooks.stripe.com"],
        "connect-src": ["https://api.stripe.com"],
    },
    "braintree": {
        "script-src": ["https://js.braintreegateway.com", "https://assets.braintreegateway.com"],
        "frame-src": ["https://assets.braintreegateway.com", "https://*.cardinalcommerce.com"],
        "connect-src": [
            "https://api.braintreegateway.com",
            "https://client-analytics.braintreegateway.com",
            "https://*.braintree-api.com",
        ],
        "img-src": ["https://assets.braintreegateway.com", "https://checkout.paypal.com"],
    },
}

TEST_CARD_LABELS: dict[str, str] = {
    "pm_card_visa": "Visa: succeeds",
    "pm_card_mastercard": "Mastercard: succeeds",
    "pm_card_threeDSecure2Required": "3D Secure required: you approve or fail the challenge",
    "pm_card_chargeDeclined": "Declined (generic decline)",
    "pm_card_chargeDeclinedInsufficientFunds": "Declined: insufficient funds",
    "pm_card_chargeDeclinedExpiredCard": "Declined: expired card",
    "pm_card_chargeDeclinedIncorrectCvc": "Declined: incorrect CVC",
    "pm_card_chargeDeclinedProcessingError": "Declined: processing error",
    "pm_card_radarBlock": "Blocked by Radar (highest risk)",
    "pm_card_riskLevelElevated": "Succeeds with elevated risk",
}


def _session(public_id: str) -> CheckoutSession:
    session = CheckoutSession.objects.select_related("merchant").filter(public_id=public_id).first()
    if session is None:
        raise Http404("No such payment link.")
    return session


def _ip_country(request: HttpRequest) -> str:
    """The customer's country from the trusted proxy's header (``PAYMENTS_IP_COUNTRY_HEADER``).

    No header is trusted unless an operator names one (``CF-IPCountry`` behind Cloudflare).
    """
    header = (getattr(settings, "PAYMENTS_IP_COUNTRY_HEADER", "") or "").strip()
    if not header:
        return ""
    key = header.upper().replace("-", "_")
    if not key.startswith("HTTP_"):
        key = f"HTTP_{key}"
    return countries.from_proxy_header(request.META.get(key))


def _with_gateway_csp(response: HttpResponse, gateway: str) -> HttpResponse:
    extra = GATEWAY_CSP.get(gateway)
    if extra:
        response._csp_update = extra  # type: ignore[attr-defined]
    return response


def _outcome_redirect(session: CheckoutSession, payment: Payment) -> HttpResponse:
    if payment.status == Payment.Status.REQUIRES_ACTION:
        return redirect("checkout_pay", public_id=session.public_id)
    return redirect("checkout_done", public_id=session.public_id)


def _unavailable(request: HttpRequest, session: CheckoutSession, message: str, status: int) -> HttpResponse:
    return render(
        request, "payments/checkout_unavailable.html", {"session": session, "message": message}, status=status
    )


@never_cache
@checkout_rate_limited
@require_http_methods(["GET", "POST"])
def pay(request: HttpRequest, public_id: str) -> HttpResponse:
    session = _session(public_id)
    ip = client_ip(request)
    ip_country = _ip_country(request)
    latest = selectors.checkout_latest_payment(session)
    if latest and latest.status in (
        Payment.Status.SUCCEEDED,
        Payment.Status.PROCESSING,
        Payment.Status.REQUIRES_CAPTURE,
    ):
        return redirect("checkout_done", public_id=public_id)
    error = ""
    if request.method == "POST":
        # Only a payment token is read from the browser; never an amount or a currency.
        method = request.POST.get("payment_method", "") or request.POST.get("payment_method_nonce", "")
        try:
            payment = services.checkout_confirm(
                session=session,
                payment_method=method,
                customer_ip=ip,
                ip_country=ip_country,
                device_data=request.POST.get("device_data") or None,
                return_url=request.build_absolute_uri(reverse("checkout_return", args=[public_id])),
            )
        except GatewayError as exc:
            error = exc.user_message
        except ApplicationError as exc:
            if exc.status_code in (403, 409, 410):
                return _unavailable(request, session, exc.message, exc.status_code)
            error = exc.message
        else:
            if payment.status == Payment.Status.REQUIRES_ACTION and session.gateway == "simulated":
                return redirect("checkout_simulated_3ds", intent_id=payment.gateway_payment_id)
            if payment.status == Payment.Status.FAILED:
                error = payment.decline_message or "The payment was declined."
            else:
                return _outcome_redirect(session, payment)
    try:
        start = services.checkout_begin(session=session, customer_ip=ip, ip_country=ip_country)
    except GatewayError as exc:
        return _unavailable(request, session, exc.user_message, 503)
    except ApplicationError as exc:
        return _unavailable(request, session, exc.message, exc.status_code)
    if start.payment.status in (Payment.Status.PROCESSING, Payment.Status.REQUIRES_CAPTURE):
        return redirect("checkout_done", public_id=public_id)  # it moved on at the gateway meanwhile
    context = {
        "session": session,
        "payment": start.payment,
        "client": start.client,
        "amount_display": money.format_minor(session.amount, session.currency),
        "amount_major": str(money.to_decimal(session.amount, session.currency)),
        "error": error
        or (start.payment.decline_message if start.payment.status == Payment.Status.FAILED else ""),
        "test_cards": [(pm, TEST_CARD_LABELS.get(pm, pm)) for pm in TEST_CARD_LABELS if pm in CARDS],
        "return_url": request.build_absolute_uri(reverse("checkout_return", args=[public_id])),
    }
    response = render(request, "payments/checkout.html", context, status=400 if error else 200)
    return _with_gateway_csp(response, session.gateway)


@never_cache
@checkout_rate_limited
def checkout_return(request: HttpRequest, public_id: str) -> HttpResponse:
    """Where Stripe sends the customer back after a 3D Secure challenge: ask the gateway what happened."""
    session = _session(public_id)
    payment = selectors.checkout_latest_payment(session)
    if payment is None:
        return redirect("checkout_pay", public_id=public_id)
    if payment.gateway_payment_id and payment.status not in services.TERMINAL_PAYMENT:
        # If the gateway is unreachable the webhook brings the result; the page says "processing".
        with contextlib.suppress(GatewayError):
            services.payment_refetch(payment=payment, source="checkout")
        payment.refresh_from_db()
    if payment.status == Payment.Status.FAILED:
        return redirect("checkout_pay", public_id=public_id)
    return redirect("checkout_done", public_id=public_id)


@never_cache
@checkout_rate_limited
def checkout_done(request: HttpRequest, public_id: str) -> HttpResponse:
    session = _session(public_id)
    payment = selectors.checkout_latest_payment(session)
    if payment is None:
        return redirect("checkout_pay", public_id=public_id)
    return render(
        request,
        "payments/checkout_done.html",
        {
            "session": session,
            "payment": payment,
            "amount_display": money.format_minor(session.amount, session.currency),
            "expired": session.expires_at <= timezone.now(),
        },
    )


@never_cache
@require_http_methods(["GET", "POST"])
def simulated_challenge(request: HttpRequest, intent_id: str) -> HttpResponse:
    """The simulated 3D Secure challenge: the 'bank' asks the customer to approve."""
    payment = (
        Payment.objects.select_related("checkout_session", "merchant")
        .filter(gateway="simulated", gateway_payment_id=intent_id)
        .first()
    )
    if payment is None or payment.checkout_session is None:
        raise Http404("No such authentication request.")
    session = payment.checkout_session
    if request.method == "POST":
        approve = request.POST.get("decision") == "approve"
        try:
            payment = services.simulated_challenge_complete(payment=payment, approve=approve)
        except ApplicationError:
            return redirect("checkout_done", public_id=session.public_id)
        if payment.status == Payment.Status.FAILED:
            return redirect("checkout_pay", public_id=session.public_id)
        return redirect("checkout_done", public_id=session.public_id)
    if payment.status != Payment.Status.REQUIRES_ACTION:
        return redirect("checkout_done", public_id=session.public_id)
    return render(
        request,
        "payments/simulated_3ds.html",
        {
            "payment": payment,
            "session": session,
            "amount_display": money.format_minor(payment.amount, payment.currency),
        },
    )
