"""The second-factor steps: enrol, verify at sign-in, step up, backup codes."""

from __future__ import annotations

import time
from io import BytesIO
from urllib.parse import urlencode

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts import services
from accounts.forms import CodeForm, EnrolCodeForm
from accounts.otp import mark_verified, otp_is_recent, require_recent_otp
from security.errors import ApplicationError

FRESH_CODES_KEY = "fresh_backup_codes"
REENROL_KEY = "reenrol_allowed_at"
REENROL_WINDOW_SECONDS = 10 * 60


def safe_next(request: HttpRequest, default: str = "home") -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse(default)


def with_next(url_name: str, next_url: str) -> str:
    return f"{reverse(url_name)}?{urlencode({'next': next_url})}"


def _qr_svg(data: str) -> str:
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    buffer = BytesIO()
    image.save(buffer)
    svg = buffer.getvalue().decode()
    # Drop the XML prolog so the SVG can sit inline in the page.
    return svg[svg.index("<svg") :]


def _reenrol_allowed(request: HttpRequest) -> bool:
    started = request.session.get(REENROL_KEY)
    return bool(started) and time.time() - float(started) < REENROL_WINDOW_SECONDS


@never_cache
@require_http_methods(["GET", "POST"])
def enrol(request: HttpRequest) -> HttpResponse:
    user = request.user
    if services.has_second_factor(user) and not (user.is_verified() and _reenrol_allowed(request)):
        if user.is_verified():
            messages.info(request, "To replace your authenticator, confirm with a current code first.")
            return redirect("settings_security")
        return redirect(with_next("two_factor_verify", safe_next(request)))
    device = services.totp_enrolment_start(user=user)
    form = EnrolCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            confirmed, codes = services.totp_enrolment_confirm(user=user, code=form.cleaned_data["code"])
        except ApplicationError as exc:
            form.add_error("code", exc.message)
        else:
            mark_verified(request, confirmed)
            request.session.pop(REENROL_KEY, None)
            request.session[FRESH_CODES_KEY] = codes
            return redirect(with_next("two_factor_backup_codes", safe_next(request)))
    secret = services.totp_secret_base32(device)
    return render(
        request,
        "two_factor/enrol.html",
        {
            "form": form,
            "qr_svg": _qr_svg(device.config_url),
            "secret": secret,
            "secret_grouped": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
            "issuer": settings.OTP_TOTP_ISSUER,
            "next": safe_next(request),
            "reenrol": services.has_second_factor(user),
        },
    )


@never_cache
def backup_codes(request: HttpRequest) -> HttpResponse:
    """Shows freshly issued backup codes exactly once."""
    codes = request.session.pop(FRESH_CODES_KEY, None)
    if not codes:
        messages.info(request, "Backup codes are shown only once. You can issue a new set in Settings.")
        return HttpResponseRedirect(safe_next(request))
    return render(request, "two_factor/backup_codes.html", {"codes": codes, "next": safe_next(request)})


def _check_code(request: HttpRequest, purpose: str) -> tuple[CodeForm, int, bool]:
    """Validate a posted code; on success the session is marked verified. Returns (form, status, ok)."""
    form = CodeForm(request.POST or None)
    if request.method != "POST" or not form.is_valid():
        return form, 200 if request.method != "POST" else 400, False
    try:
        device = services.second_factor_verify(
            user=request.user, code=form.cleaned_data["code"], purpose=purpose
        )
    except ApplicationError as exc:
        form.add_error("code", exc.message)
        return form, (429 if exc.status_code == 429 else 400), False
    mark_verified(request, device)
    return form, 200, True


@never_cache
@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    user = request.user
    if user.is_verified():
        return HttpResponseRedirect(safe_next(request))
    if not services.has_second_factor(user):
        return redirect(with_next("two_factor_enrol", safe_next(request)))
    form, status, ok = _check_code(request, "sign_in")
    if ok:
        audit_signed_in(request)
        return HttpResponseRedirect(safe_next(request))
    return render(
        request, "two_factor/verify.html", {"form": form, "next": safe_next(request)}, status=status
    )


def audit_signed_in(request: HttpRequest) -> None:
    from security import audit

    audit.record(actor=request.user, action="auth.signed_in", target=request.user)


@never_cache
@require_http_methods(["GET", "POST"])
def step_up(request: HttpRequest) -> HttpResponse:
    """Ask a verified user for a fresh code before a sensitive action."""
    form, status, ok = _check_code(request, "step_up")
    if ok:
        return HttpResponseRedirect(safe_next(request))
    return render(
        request,
        "two_factor/step_up.html",
        {"form": form, "next": safe_next(request), "already_recent": otp_is_recent(request, 5)},
        status=status,
    )


@never_cache
@require_http_methods(["GET", "POST"])
def reenrol(request: HttpRequest) -> HttpResponse:
    """Replacing the authenticator needs a current code first."""
    form, status, ok = _check_code(request, "reenrol")
    if ok:
        request.session[REENROL_KEY] = int(time.time())
        return redirect(with_next("two_factor_enrol", reverse("settings_security")))
    return render(request, "two_factor/reenrol.html", {"form": form}, status=status)


@require_POST
@require_recent_otp(minutes=5)
def regenerate_backup_codes(request: HttpRequest) -> HttpResponse:
    try:
        codes = services.backup_codes_regenerate(user=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("settings_security")
    request.session[FRESH_CODES_KEY] = codes
    return redirect(with_next("two_factor_backup_codes", reverse("settings_security")))
