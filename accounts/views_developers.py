"""Developers: the merchant's API keys (created and rotated behind a fresh second factor)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from accounts import api_keys, merchant_roles, selectors
from accounts.merchant_roles import API_KEYS_MANAGE
from accounts.models import ApiKey, Merchant
from accounts.otp import require_recent_otp
from accounts.permissions import merchant_member_required
from security.errors import ApplicationError

FRESH_KEY_SESSION = "fresh_api_key"


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        label="Name", max_length=80, help_text="Where the key is used, e.g. 'Shop backend'."
    )
    scope = forms.ChoiceField(label="Access", choices=ApiKey.Scope.choices, initial=ApiKey.Scope.READ)
    mode = forms.ChoiceField(label="Mode", choices=ApiKey.Mode.choices, initial=ApiKey.Mode.TEST)
    lifetime_days = forms.TypedChoiceField(
        label="Expires after",
        coerce=int,
        choices=[(d, f"{d} days") for d in api_keys.LIFETIME_CHOICES_DAYS],
        initial=api_keys.DEFAULT_LIFETIME_DAYS,
    )


def _key_for(merchant: Merchant, public_id: str) -> ApiKey:
    key = selectors.api_key_for(merchant, public_id)
    if key is None:
        raise Http404("No such API key.")
    return key


def _page(
    request: HttpRequest, merchant: Merchant, form: ApiKeyForm, status: int = 200, **extra: object
) -> HttpResponse:
    """The Developers page: the merchant's keys (newest 200) and the new-key form."""
    keys = list(selectors.api_keys_for(merchant)[:200])
    for key in keys:
        key.power_note = merchant_roles.key_power_note(key.scope, getattr(key, "creator_role", None))  # type: ignore[attr-defined]
    return render(
        request,
        "accounts/developers.html",
        {"keys": keys, "form": form, "merchant": merchant, **extra},
        status=status,
    )


@never_cache
@merchant_member_required(API_KEYS_MANAGE)
def developers(request: HttpRequest) -> HttpResponse:
    merchant = request.membership.merchant  # type: ignore[attr-defined]
    return _page(request, merchant, ApiKeyForm(), fresh=request.session.pop(FRESH_KEY_SESSION, None))


@merchant_member_required(API_KEYS_MANAGE)
@require_http_methods(["POST"])
@require_recent_otp(minutes=5)
def api_key_create(request: HttpRequest) -> HttpResponse:
    merchant = request.membership.merchant  # type: ignore[attr-defined]
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _page(request, merchant, form, status=400)
    try:
        issued = api_keys.api_key_create(actor=request.user, merchant=merchant, **form.cleaned_data)
    except ApplicationError as exc:
        form.add_error(None, exc.message)
        return _page(request, merchant, form, status=exc.status_code)
    request.session[FRESH_KEY_SESSION] = {"name": issued.key.name, "secret": issued.secret}
    return redirect("developers")


@merchant_member_required(API_KEYS_MANAGE)
@require_http_methods(["GET", "POST"])
@require_recent_otp(minutes=5)
def api_key_rotate(request: HttpRequest, public_id: str) -> HttpResponse:
    merchant = request.membership.merchant  # type: ignore[attr-defined]
    key = _key_for(merchant, public_id)
    if request.method == "GET":
        return render(request, "accounts/api_key_confirm.html", {"key": key, "action": "rotate"})
    try:
        issued = api_keys.api_key_rotate(actor=request.user, key=key)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("developers")
    request.session[FRESH_KEY_SESSION] = {"name": issued.key.name, "secret": issued.secret, "rotated": True}
    return redirect("developers")


@merchant_member_required(API_KEYS_MANAGE)
@require_http_methods(["GET", "POST"])
def api_key_revoke(request: HttpRequest, public_id: str) -> HttpResponse:
    merchant = request.membership.merchant  # type: ignore[attr-defined]
    key = _key_for(merchant, public_id)
    if request.method == "GET":
        return render(request, "accounts/api_key_confirm.html", {"key": key, "action": "revoke"})
    try:
        api_keys.api_key_revoke(actor=request.user, key=key)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Key “{key.name}” revoked. Requests using it now fail.")
    return redirect("developers")
