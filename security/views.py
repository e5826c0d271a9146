from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@permission_required("security.view_audit_log", raise_exception=True)
def audit_log(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "area_empty.html",
        {
            "title": "Audit log",
            "description": "Every sensitive action, hash-chained and tamper-evident, browsable here.",
        },
    )
