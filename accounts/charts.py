"""Server-rendered SVG charts: no JavaScript, no third-party requests, CSP-safe.

Each chart is an ``<svg role="img">`` with a title and description for screen
readers, presentation attributes only (no inline ``style``), and the numbers
also available as a table via :func:`chart_table` for those who prefer to read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from django.utils.safestring import SafeString, mark_safe

WIDTH = 640
HEIGHT = 220
PAD_LEFT = 56
PAD_RIGHT = 12
PAD_TOP = 12
PAD_BOTTOM = 36
PALETTE = ("#1d3b8b", "#17703a", "#b42318", "#8a5a00", "#6b3fa0", "#0b7285")


@dataclass(frozen=True)
class Point:
    label: str
    value: float


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * magnitude
        if candidate >= value:
            return float(candidate)
    return float(10 * magnitude)


def _axis(max_value: float, fmt: Callable[[float], str], plot_w: float, plot_h: float) -> list[str]:
    parts = []
    for i in range(5):
        v = max_value * i / 4
        y = PAD_TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{PAD_LEFT}" y1="{y:.1f}" x2="{PAD_LEFT + plot_w:.1f}" y2="{y:.1f}" '
            f'stroke="#d9dde3" stroke-width="1"/>'
            f'<text x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#5b6470">'
            f"{escape(fmt(v))}</text>"
        )
    return parts


def _frame(title: str, description: str, body: list[str], height: int = HEIGHT) -> SafeString:
    ident = abs(hash((title, description))) % 10**8
    svg = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="chart-t-{ident} chart-d-{ident}" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="chart-t-{ident}">{escape(title)}</title>'
        f'<desc id="chart-d-{ident}">{escape(description)}</desc>' + "".join(body) + "</svg>"
    )
    return mark_safe(svg)  # noqa: S308 - every interpolated text is escaped above


def _label_every(n: int) -> int:
    return max(1, (n + 9) // 10)


def bar_chart(
    points: Sequence[Point],
    *,
    title: str,
    fmt: Callable[[float], str] = lambda v: f"{v:,.0f}",
    color: str = PALETTE[0],
) -> SafeString:
    """Vertical bars, one per point (e.g. daily volume)."""
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    if not points:
        return _frame(
            title,
            "No data.",
            [
                f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" '
                'font-size="13" fill="#5b6470">No data yet</text>'
            ],
        )
    max_value = _nice_max(max(p.value for p in points))
    body = _axis(max_value, fmt, plot_w, plot_h)
    slot = plot_w / len(points)
    bar_w = max(1.0, slot * 0.7)
    every = _label_every(len(points))
    for i, p in enumerate(points):
        h = plot_h * (p.value / max_value) if max_value else 0
        x = PAD_LEFT + i * slot + (slot - bar_w) / 2
        y = PAD_TOP + plot_h - h
        body.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{color}">'
            f"<title>{escape(p.label)}: {escape(fmt(p.value))}</title></rect>"
        )
        if i % every == 0:
            body.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - PAD_BOTTOM + 16}" text-anchor="middle" '
                f'font-size="11" fill="#5b6470">{escape(p.label)}</text>'
            )
    total = sum(p.value for p in points)
    return _frame(title, f"{len(points)} bars, total {fmt(total)}.", body)


def line_chart(
    points: Sequence[Point],
    *,
    title: str,
    fmt: Callable[[float], str] = lambda v: f"{v:,.0f}",
    max_value: float | None = None,
    color: str = PALETTE[1],
) -> SafeString:
    """A line through the points (e.g. success rate per day)."""
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    if not points:
        return bar_chart([], title=title)
    top = max_value if max_value is not None else _nice_max(max(p.value for p in points))
    body = _axis(top, fmt, plot_w, plot_h)
    step = plot_w / max(1, len(points) - 1)
    coords = [
        (PAD_LEFT + i * step, PAD_TOP + plot_h - plot_h * (p.value / top if top else 0))
        for i, p in enumerate(points)
    ]
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(coords))
    body.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
    every = _label_every(len(points))
    for i, ((x, y), p) in enumerate(zip(coords, points, strict=True)):
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}">'
            f"<title>{escape(p.label)}: {escape(fmt(p.value))}</title></circle>"
        )
        if i % every == 0:
            body.append(
                f'<text x="{x:.1f}" y="{HEIGHT - PAD_BOTTOM + 16}" text-anchor="middle" font-size="11" '
                f'fill="#5b6470">{escape(p.label)}</text>'
            )
    return _frame(title, f"{len(points)} points from {points[0].label} to {points[-1].label}.", body)


def hbar_chart(
    points: Sequence[Point],
    *,
    title: str,
    fmt: Callable[[float], str] = lambda v: f"{v:,.0f}",
    color: str = PALETTE[2],
) -> SafeString:
    """Horizontal bars with their labels (e.g. declines by reason, queue ageing)."""
    row = 26
    height = PAD_TOP + row * max(1, len(points)) + 8
    label_w = 180
    plot_w = WIDTH - label_w - 70
    if not points:
        return bar_chart([], title=title)
    top = max(p.value for p in points) or 1
    body = []
    for i, p in enumerate(points):
        y = PAD_TOP + i * row
        w = plot_w * p.value / top
        body.append(
            f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" font-size="12" fill="#1b1f24">'
            f"{escape(p.label)}</text>"
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row - 10}" fill="{color}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 16}" font-size="12" fill="#5b6470">'
            f"{escape(fmt(p.value))}</text>"
        )
    return _frame(title, f"{len(points)} categories.", body, height=height)


def chart_table(
    points: Sequence[Point], *, caption: str, fmt: Callable[[float], str] = lambda v: f"{v:,.0f}"
) -> SafeString:
    rows = "".join(f"<tr><td>{escape(p.label)}</td><td>{escape(fmt(p.value))}</td></tr>" for p in points)
    return mark_safe(  # noqa: S308 - escaped above
        f'<details class="chart-data"><summary>Show the numbers</summary><table class="table">'
        f"<caption>{escape(caption)}</caption><tbody>{rows}</tbody></table></details>"
    )
