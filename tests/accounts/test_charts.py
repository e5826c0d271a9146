"""Server-rendered charts draw the data they are given, safely."""

from __future__ import annotations

import re

from accounts.charts import Point, bar_chart, chart_table, hbar_chart, line_chart


def test_bar_heights_are_proportional_to_values():
    svg = bar_chart([Point("Mon", 10), Point("Tue", 20), Point("Wed", 5)], title="Volume")
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg)]
    assert heights[1] == 2 * heights[0] and heights[0] == 2 * heights[2]
    assert 'role="img"' in svg and "<title" in svg


def test_labels_are_escaped_and_there_is_no_inline_style_or_script():
    evil = '<script>alert("x")</script>'
    for svg in (
        bar_chart([Point(evil, 1)], title=evil),
        line_chart([Point(evil, 1), Point("b", 2)], title="t"),
        hbar_chart([Point(evil, 3)], title="t"),
        chart_table([Point(evil, 1)], caption=evil),
    ):
        assert "<script>" not in svg and "style=" not in svg


def test_empty_series_says_so():
    assert "No data yet" in bar_chart([], title="Nothing")


def test_line_chart_respects_a_fixed_top_for_percentages():
    svg = line_chart(
        [Point("a", 50), Point("b", 100)], title="Success rate", max_value=100, fmt=lambda v: f"{v:.0f}%"
    )
    ys = [float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"', svg)]
    assert ys[1] < ys[0]  # 100% sits higher than 50%
    assert "100%" in svg
