"""The audit log pages: browse and filter, export CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from security import audit, selectors
from security.forms import AuditFilterForm

PAGE_SIZE = 50
CSV_COLUMNS = [
    "sequence",
    "occurred_at",
    "actor_id",
    "actor_label",
    "action",
    "target_type",
    "target_id",
    "merchant_id",
    "ip",
    "details",
    "prev_hash",
    "hash",
]


def _filtered(request: HttpRequest) -> tuple[AuditFilterForm, Any]:
    form = AuditFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    return form, selectors.audit_events(**{k: v for k, v in filters.items() if v})


@require_GET
@permission_required("security.view_audit_log", raise_exception=True)
def audit_log(request: HttpRequest) -> HttpResponse:
    form, events = _filtered(request)
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "security/audit_log.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "status": 400 if form.is_bound and not form.is_valid() else 200,
        },
        status=400 if form.is_bound and not form.is_valid() else 200,
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


def _safe_cell(value: Any) -> str:
    """Neutralise spreadsheet formulas (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _rows(events: Any) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for event in events.iterator(chunk_size=2000):
        yield writer.writerow(
            [
                _safe_cell(event.sequence),
                event.occurred_at.isoformat(),
                *(
                    _safe_cell(getattr(event, name))
                    for name in (
                        "actor_id",
                        "actor_label",
                        "action",
                        "target_type",
                        "target_id",
                        "merchant_id",
                        "ip",
                    )
                ),
                _safe_cell(event.details),
                event.prev_hash,
                event.hash,
            ]
        )


@require_GET
@permission_required("security.view_audit_log", raise_exception=True)
def audit_log_export(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    form, events = _filtered(request)
    if form.is_bound and not form.is_valid():
        return HttpResponse("The filters are invalid; fix them on the audit log page.", status=400)
    audit.record(
        actor=request.user,
        action="audit.exported",
        details={
            "filters": {k: str(v) for k, v in (form.cleaned_data if form.is_bound else {}).items() if v}
        },
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(_rows(events), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-log-{stamp}.csv"'
    return response
