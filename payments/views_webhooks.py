"""Developers → Webhooks: the merchant's endpoints, their delivery log, resend."""

from __future__ import annotations

import json

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts.merchant_roles import WEBHOOKS_MANAGE
from accounts.models import Merchant
from accounts.otp import require_recent_otp
from accounts.permissions import merchant_member_required
from payments import merchant_webhooks, selectors
from payments.models import WebhookDelivery, WebhookEndpoint
from payments.models.endpoints import EVENT_TYPES
from security.errors import ApplicationError

FRESH_SECRET_SESSION = "fresh_webhook_secret"  # noqa: S105 - a session key name
DELIVERIES_PER_PAGE = 50


class EndpointForm(forms.Form):
    url = forms.CharField(
        label="Endpoint URL",
        max_length=merchant_webhooks.MAX_URL_LENGTH,
        help_text="An https URL on your server, e.g. https://shop.example.com/hooks/fintech.",
        widget=forms.TextInput(attrs={"inputmode": "url", "autocomplete": "off", "spellcheck": "false"}),
    )
    description = forms.CharField(label="Description (optional)", max_length=200, required=False)
    event_types = forms.MultipleChoiceField(
        label="Events",
        choices=[(t, t) for t in EVENT_TYPES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Leave all unticked to receive every event.",
    )


def _merchant(request: HttpRequest) -> Merchant:
    return request.membership.merchant  # type: ignore[attr-defined]


def _endpoint(request: HttpRequest, public_id: str) -> WebhookEndpoint:
    endpoint = selectors.webhook_endpoint_for(_merchant(request), public_id)
    if endpoint is None:
        raise Http404("No such webhook endpoint.")
    return endpoint


def _delivery(request: HttpRequest, public_id: str, delivery_id: str) -> WebhookDelivery:
    delivery = selectors.webhook_delivery_for(_endpoint(request, public_id), delivery_id)
    if delivery is None:
        raise Http404("No such delivery.")
    return delivery


def _list(request: HttpRequest, form: EndpointForm, status: int = 200) -> HttpResponse:
    merchant = _merchant(request)
    return render(
        request,
        "payments/webhooks.html",
        {
            "endpoints": selectors.webhook_endpoints_for(merchant)[
                : merchant_webhooks.MAX_ENDPOINTS_PER_MERCHANT
            ],
            "form": form,
            "fresh": request.session.pop(FRESH_SECRET_SESSION, None),
            "signature_header": merchant_webhooks.SIGNATURE_HEADER,
        },
        status=status,
    )


@never_cache
@merchant_member_required(WEBHOOKS_MANAGE)
def endpoints(request: HttpRequest) -> HttpResponse:
    return _list(request, EndpointForm())


@merchant_member_required(WEBHOOKS_MANAGE)
@require_POST
@require_recent_otp(minutes=5)
def endpoint_create(request: HttpRequest) -> HttpResponse:
    form = EndpointForm(request.POST)
    if not form.is_valid():
        return _list(request, form, status=400)
    try:
        issued = merchant_webhooks.webhook_endpoint_create(
            actor=request.user,  # type: ignore[arg-type]
            merchant=_merchant(request),
            url=form.cleaned_data["url"],
            description=form.cleaned_data["description"],
            event_types=form.cleaned_data["event_types"],
        )
    except ApplicationError as exc:
        form.add_error("url" if exc.code in ("unsafe_url", "invalid_url") else None, exc.message)
        return _list(request, form, status=exc.status_code)
    request.session[FRESH_SECRET_SESSION] = {
        "endpoint": issued.endpoint.public_id,
        "url": issued.endpoint.url,
        "secret": issued.secret,
    }
    return redirect("webhook_endpoints")


@never_cache
@merchant_member_required(WEBHOOKS_MANAGE)
def endpoint_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    endpoint = _endpoint(request, public_id)
    deliveries = list(selectors.webhook_deliveries_for(endpoint)[:DELIVERIES_PER_PAGE])
    return render(
        request,
        "payments/webhook_endpoint.html",
        {"endpoint": endpoint, "deliveries": deliveries, "page_size": DELIVERIES_PER_PAGE},
    )


@merchant_member_required(WEBHOOKS_MANAGE)
@require_POST
def endpoint_set_status(request: HttpRequest, public_id: str) -> HttpResponse:
    endpoint = _endpoint(request, public_id)
    choice = request.POST.get("enabled")
    if choice not in ("0", "1"):
        messages.error(request, "Choose whether to enable or disable the endpoint.")
        return redirect("webhook_endpoint_detail", public_id=public_id)
    enable = choice == "1"
    try:
        merchant_webhooks.webhook_endpoint_set_enabled(
            actor=request.user,  # type: ignore[arg-type]
            endpoint=endpoint,
            enabled=enable,
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            "Endpoint enabled: new events will be sent to it."
            if enable
            else "Endpoint disabled: nothing more is sent to it until you enable it again.",
        )
    return redirect("webhook_endpoint_detail", public_id=public_id)


@merchant_member_required(WEBHOOKS_MANAGE)
@require_http_methods(["GET", "POST"])
def endpoint_delete(request: HttpRequest, public_id: str) -> HttpResponse:
    endpoint = _endpoint(request, public_id)
    if request.method == "GET":
        return render(request, "payments/webhook_endpoint_delete.html", {"endpoint": endpoint})
    try:
        merchant_webhooks.webhook_endpoint_delete(actor=request.user, endpoint=endpoint)  # type: ignore[arg-type]
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("webhook_endpoint_detail", public_id=public_id)
    messages.success(request, f"Endpoint {endpoint.url} deleted, with its delivery log.")
    return redirect("webhook_endpoints")


def _pretty(body: str) -> str:
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body


@never_cache
@merchant_member_required(WEBHOOKS_MANAGE)
def delivery_detail(request: HttpRequest, public_id: str, delivery_id: str) -> HttpResponse:
    delivery = _delivery(request, public_id, delivery_id)
    return render(
        request,
        "payments/webhook_delivery.html",
        {
            "endpoint": delivery.endpoint,
            "delivery": delivery,
            "attempts": selectors.webhook_delivery_attempts(delivery),
            "pretty_body": _pretty(delivery.body),
        },
    )


@merchant_member_required(WEBHOOKS_MANAGE)
@require_POST
def delivery_resend(request: HttpRequest, public_id: str, delivery_id: str) -> HttpResponse:
    delivery = _delivery(request, public_id, delivery_id)
    try:
        merchant_webhooks.webhook_delivery_resend(actor=request.user, delivery=delivery)  # type: ignore[arg-type]
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{delivery.event_type} ({delivery.event_id}) will be sent again now.")
    if request.POST.get("next") == "delivery":
        return redirect("webhook_delivery_detail", public_id=public_id, delivery_id=delivery_id)
    return redirect("webhook_endpoint_detail", public_id=public_id)
