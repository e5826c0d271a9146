"""The merchant dashboard: the payments list (filters, search, keyset pages) and CSV exports."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts.merchant_roles import PAYMENTS_EXPORT, PAYMENTS_VIEW
from accounts.otp import require_recent_otp
from accounts.permissions import merchant_member_required
from payments import exports, selectors
from payments.forms_dashboard import FILTER_FIELDS, PaymentFilterForm
from payments.models import PaymentExport
from security.errors import ApplicationError


@merchant_member_required(PAYMENTS_VIEW)
@require_GET
def payments_list(request: HttpRequest) -> HttpResponse:
    merchant = request.membership.merchant  # type: ignore[attr-defined]
    form = PaymentFilterForm(request.GET)
    if not form.is_valid():
        return render(
            request, "payments/payments_list.html", {"form": form, "page": None, "query": ""}, status=400
        )
    filters = form.filters()
    page = selectors.payments_page(
        merchant, filters, after=request.GET.get("after", ""), before=request.GET.get("before", "")
    )
    raw = form.raw()
    return render(
        request,
        "payments/payments_list.html",
        {
            "form": form,
            "page": page,
            "filtered": filters.active,
            "query": urlencode(raw),
            "next_url": _page_url(raw, after=page.next_cursor),
            "previous_url": _page_url(raw, before=page.previous_cursor),
            "first_url": _page_url(raw) if request.GET.get("after") or request.GET.get("before") else "",
            "filter_fields": FILTER_FIELDS,
            "raw": raw,
        },
    )


def _page_url(raw: dict[str, str], **cursor: str | None) -> str:
    """The list's URL with the filters, plus ``after=``/``before=`` (``""`` when that page does not exist)."""
    params = dict(raw)
    for name, value in cursor.items():
        if value is None:
            return ""
        params[name] = value
    return reverse("payments_list") + ("?" + urlencode(params) if params else "")


@merchant_member_required(PAYMENTS_EXPORT)
@require_POST
@require_recent_otp(minutes=5)
def export_create(request: HttpRequest) -> HttpResponse:
    membership = request.membership  # type: ignore[attr-defined]
    form = PaymentFilterForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Fix the filters before exporting.")
        return redirect("payments_list")
    try:
        export = exports.payment_export_create(
            actor=request.user, merchant=membership.merchant, role=membership.role, raw_filters=form.raw()
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("payments_list")
    return redirect("payment_export_detail", public_id=export.public_id)


def _export(request: HttpRequest, public_id: str) -> PaymentExport:
    export = selectors.payment_export_for(request.membership.merchant, public_id)  # type: ignore[attr-defined]
    if export is None:
        raise Http404("No such export.")
    return export


@merchant_member_required(PAYMENTS_EXPORT)
@require_GET
def exports_list(request: HttpRequest) -> HttpResponse:
    merchant = request.membership.merchant  # type: ignore[attr-defined]
    return render(request, "payments/exports.html", {"exports": selectors.payment_exports_for(merchant)[:50]})


@never_cache
@merchant_member_required(PAYMENTS_EXPORT)
@require_GET
def export_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    export = _export(request, public_id)
    return render(
        request,
        "payments/export_detail.html",
        {
            "export": export,
            "progress": exports.payment_export_progress(export),
            "query": urlencode(export.filters),
            "expired": export.is_expired(),
            "may_download": exports.export_downloadable_by(export, request.membership.role),  # type: ignore[attr-defined]
            "refusal": exports.FULL_EMAILS_REFUSAL,
        },
    )


@never_cache
@merchant_member_required(PAYMENTS_EXPORT)
@require_GET
def export_progress(request: HttpRequest, public_id: str) -> JsonResponse:
    return JsonResponse(exports.payment_export_progress(_export(request, public_id)))


@never_cache
@merchant_member_required(PAYMENTS_EXPORT)
@require_GET
def export_download(request: HttpRequest, public_id: str) -> HttpResponse:
    export = _export(request, public_id)
    try:
        parts = exports.payment_export_download(actor=request.user, export=export)
    except ApplicationError as exc:
        if exc.code == exports.FULL_EMAILS_REFUSED:
            # Say why, and offer the same export with masked emails (a page, not a bare 403).
            return render(
                request,
                "payments/export_refused.html",
                {"export": export, "reason": exc.message, "filters": export.filters},
                status=403,
            )
        messages.error(request, exc.message)
        return redirect("payment_export_detail", public_id=public_id)
    response = StreamingHttpResponse(parts, content_type="text/csv; charset=utf-8")
    response["Content-Length"] = str(export.size)
    response["Content-Disposition"] = f'attachment; filename="{export.file_name}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
