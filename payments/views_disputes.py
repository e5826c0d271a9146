"""The merchant's disputes: open ones first with their evidence deadlines, then the history."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts.merchant_roles import DISPUTES_VIEW
from accounts.permissions import merchant_member_required
from payments import selectors
from payments.models import Dispute

PAGE = 50
D = Dispute.Status
# ?status= value: (label, open statuses shown, closed statuses shown)
FILTERS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "": ("All", Dispute.OPEN_STATUSES, (D.WON, D.LOST, D.CLOSED)),
    "open": ("Open", Dispute.OPEN_STATUSES, ()),
    D.NEEDS_RESPONSE: ("Needs response", (D.NEEDS_RESPONSE,), ()),
    D.UNDER_REVIEW: ("Under review", (D.UNDER_REVIEW,), ()),
    "history": ("Won, lost and closed", (), (D.WON, D.LOST, D.CLOSED)),
    D.WON: ("Won", (), (D.WON,)),
    D.LOST: ("Lost", (), (D.LOST,)),
    D.CLOSED: ("Closed", (), (D.CLOSED,)),
}


@merchant_member_required(DISPUTES_VIEW)
def disputes(request: HttpRequest) -> HttpResponse:
    merchant = request.membership.merchant  # type: ignore[attr-defined]
    status = request.GET.get("status", "")
    if status not in FILTERS:
        status = ""
    _label, open_statuses, closed_statuses = FILTERS[status]
    open_disputes: list[Dispute] = []
    at_risk: list[dict] = []
    if open_statuses:
        open_disputes = list(selectors.disputes_open_for(merchant).filter(status__in=open_statuses))
        at_risk = selectors.disputes_at_risk(merchant, statuses=open_statuses)
    history = None
    if closed_statuses:
        closed_qs = selectors.disputes_closed_for(merchant).filter(status__in=closed_statuses)
        history = Paginator(closed_qs, PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "payments/disputes.html",
        {
            "status": status,
            "filters": [(value, label) for value, (label, _o, _c) in FILTERS.items()],
            "open_disputes": open_disputes,
            "show_open": bool(open_statuses),
            "at_risk": at_risk,
            "history": history,
            "now": timezone.now(),
        },
    )
