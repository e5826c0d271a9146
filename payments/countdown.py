"""How long is left before a deadline, in words: "3 days 4 hours left", "overdue".

The same rules run in the browser (static/js/countdown.js) to keep a page's countdowns live.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

URGENT = timedelta(hours=48)


@dataclass(frozen=True)
class Countdown:
    text: str
    urgent: bool  # under 48 hours left, or overdue
    overdue: bool

    @property
    def css(self) -> str:
        return "due-overdue" if self.overdue else "due-urgent" if self.urgent else "due-later"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def countdown(due: datetime | None, now: datetime) -> Countdown | None:
    if due is None:
        return None
    left = due - now
    seconds = int(left.total_seconds())
    if seconds <= 0:
        return Countdown("overdue", urgent=True, overdue=True)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        text = _plural(days, "day") + (f" {_plural(hours, 'hour')}" if hours else "")
    elif hours:
        text = _plural(hours, "hour") + (f" {_plural(minutes, 'minute')}" if minutes else "")
    elif minutes:
        text = _plural(minutes, "minute")
    else:
        text = "less than a minute"
    return Countdown(f"{text} left", urgent=left < URGENT, overdue=False)
