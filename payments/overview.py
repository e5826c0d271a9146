"""The payments panel of the merchant overview: charts of the last 30 days, from the daily rollup.

Registered into ``accounts.overview`` from ``PaymentsConfig.ready()`` (accounts
never imports payments). Everything is read from ``PaymentDailyStat`` (one
query, a few rows per day), so the page costs the same at any payment volume.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import SafeString

from accounts.charts import Point, bar_chart, chart_table, hbar_chart, line_chart
from payments import money, selectors
from payments.models import PaymentDailyStat

DAYS = 30
Outcome = PaymentDailyStat.Outcome


def _label(day: dt.date) -> str:
    return f"{day.day} {day:%b}"


@dataclass
class Overview:
    days: list[dt.date]
    main_currency: str
    volume: list[Point]  # minor units of main_currency per day
    volume_by_currency: list[tuple[str, int, int]]  # currency, succeeded count, amount
    success_rate: list[Point]  # percent, days with attempts only
    succeeded: int
    failed: int
    declines: list[Point]
    disputes: list[Point]
    disputes_by_currency: list[tuple[str, int, int]]


def overview_for(merchant: Any, *, today: dt.date | None = None, days: int = DAYS) -> Overview:
    today = today or timezone.now().astimezone(dt.UTC).date()
    first = today - dt.timedelta(days=days - 1)
    span = [first + dt.timedelta(days=i) for i in range(days)]
    rows = selectors.daily_stats_for(merchant, first=first, last=today)
    ok_amount: dict[tuple[dt.date, str], int] = defaultdict(int)
    ok_by_currency: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    ok_per_day: dict[dt.date, int] = defaultdict(int)
    failed_per_day: dict[dt.date, int] = defaultdict(int)
    declines: dict[str, int] = defaultdict(int)
    disputes_per_day: dict[dt.date, int] = defaultdict(int)
    disputes_by_currency: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        if r.outcome == Outcome.SUCCEEDED:
            ok_amount[(r.day, r.currency)] += r.amount
            ok_by_currency[r.currency][0] += r.count
            ok_by_currency[r.currency][1] += r.amount
            ok_per_day[r.day] += r.count
        elif r.outcome == Outcome.FAILED:
            failed_per_day[r.day] += r.count
            declines[r.decline_code or "unknown"] += r.count
        elif r.outcome == Outcome.DISPUTE:
            disputes_per_day[r.day] += r.count
            disputes_by_currency[r.currency][0] += r.count
            disputes_by_currency[r.currency][1] += r.amount
    # The main currency: the one with the most successful payments (then the most money).
    main = max(ok_by_currency, key=lambda c: (ok_by_currency[c][0], ok_by_currency[c][1], c), default="")
    rate = []
    for day in span:
        attempts = ok_per_day[day] + failed_per_day[day]
        if attempts:
            rate.append(Point(_label(day), round(100 * ok_per_day[day] / attempts, 1)))
    return Overview(
        days=span,
        main_currency=main,
        volume=[Point(_label(d), ok_amount[(d, main)]) for d in span] if main else [],
        volume_by_currency=sorted(
            ((c, n, a) for c, (n, a) in ok_by_currency.items()), key=lambda t: (-t[1], t[0])
        ),
        success_rate=rate,
        succeeded=sum(ok_per_day.values()),
        failed=sum(failed_per_day.values()),
        declines=[
            Point(code, n) for code, n in sorted(declines.items(), key=lambda kv: (-kv[1], kv[0]))[:8] if n
        ],
        disputes=[Point(_label(d), disputes_per_day[d]) for d in span],
        disputes_by_currency=sorted(
            ((c, n, a) for c, (n, a) in disputes_by_currency.items() if n), key=lambda t: t[0]
        ),
    )


def _minor_units(value: float) -> int:
    """A money point's value as what it must be, integer minor units: never truncated or rounded."""
    if isinstance(value, int):
        return value
    raise TypeError(f"Chart amounts are integer minor units, not {value!r}.")


def render_panel(request: HttpRequest, merchant: Any) -> SafeString | None:
    data = overview_for(merchant)
    main = data.main_currency

    def fmt_money(v: float) -> str:  # a day's volume: shown exactly as the integer it is
        return money.format_minor(_minor_units(v), main)

    def fmt_axis(v: float) -> str:
        # The bars' own amounts are integers; the gridlines between them (a quarter of a round
        # maximum) may fall between two minor units and show the nearest. The axis is narrow:
        # the currency is in the title.
        return money.format_minor(v if isinstance(v, int) else round(v), main, with_code=False)

    def fmt_pct(v: float) -> str:
        return f"{v:.0f}%" if float(v).is_integer() else f"{v:.1f}%"

    charts = {
        "volume": bar_chart(data.volume, title=f"Daily volume ({main}), last {DAYS} days", fmt=fmt_axis)
        if main
        else None,
        "volume_table": chart_table(data.volume, caption=f"Succeeded volume per day ({main})", fmt=fmt_money)
        if main
        else None,
        "rate": line_chart(data.success_rate, title="Success rate per day", fmt=fmt_pct, max_value=100)
        if data.success_rate
        else None,
        "rate_table": chart_table(data.success_rate, caption="Success rate per day", fmt=fmt_pct),
        "declines": hbar_chart(data.declines, title="Declines by reason") if data.declines else None,
        "declines_table": chart_table(data.declines, caption="Declined payments by reason"),
        "disputes": bar_chart(data.disputes, title="Disputes opened per day", color="#b42318")
        if any(p.value for p in data.disputes)
        else None,
        "disputes_table": chart_table(data.disputes, caption="Disputes opened per day"),
    }
    attempts = data.succeeded + data.failed
    return SafeString(
        render_to_string(
            "payments/overview_panel.html",
            {
                "data": data,
                "charts": charts,
                "days": DAYS,
                "overall_rate": fmt_pct(round(100 * data.succeeded / attempts, 1)) if attempts else "",
            },
            request=request,
        )
    )
