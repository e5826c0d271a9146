from __future__ import annotations

from datetime import datetime

from django import template

from payments.countdown import Countdown, countdown

register = template.Library()


@register.simple_tag
def time_left(due: datetime | None, now: datetime) -> Countdown | None:
    """``{% time_left d.evidence_due_by now as left %}``: then ``{{ left.text }}``, ``{{ left.css }}``."""
    return countdown(due, now)
