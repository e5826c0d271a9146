"""Finding payment card numbers (PANs) in text.

A card number here is a run of 13-19 digits, optionally with single spaces or
dashes between digit groups, that passes the Luhn check and starts with 2-6
(the ISO/IEC 7812 industry digits of every card network we take: Mastercard
2/5, Amex/Diners/JCB 3, Visa 4, Discover/UnionPay/Maestro 6). That keeps
millisecond and microsecond Unix timestamps (which start with 1), phone
numbers, amounts, TOTP and backup codes from counting as cards.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# A digit run with single separators; the caller checks length, Luhn and prefix.
_RUN = re.compile(r"\d(?:[ -]?\d)+")
_ALNUM = re.compile(r"[0-9A-Za-z]")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def is_card_number(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_ok(digits)


_GROUP = re.compile(r"\d+")


def _plausible_grouping(run: str) -> bool:
    """Cards are written in groups of 3 or more digits (4-4-4-4, 4-6-5); dates are not (2024-05-01)."""
    groups = _GROUP.findall(run)
    return all(len(g) >= 3 for g in groups[:-1])


def _candidates(run: str, strict: bool) -> Iterator[tuple[int, int]]:
    """Spans (within ``run``) of card numbers: the whole run, or whole groups inside a longer one."""
    digits = run.replace(" ", "").replace("-", "")
    if 13 <= len(digits) <= 19:
        if is_card_number(digits) and (not strict or _plausible_grouping(run)):
            yield 0, len(run)
        return
    if len(digits) < 13 or not any(sep in run for sep in " -"):
        return
    groups = [(m.start(), m.end()) for m in _GROUP.finditer(run)]
    for i in range(len(groups)):
        count = 0
        for j in range(i, len(groups)):
            count += groups[j][1] - groups[j][0]
            if count > 19:
                break
            if count >= 13:
                span = run[groups[i][0] : groups[j][1]]
                if is_card_number(span.replace(" ", "").replace("-", "")) and (
                    not strict or _plausible_grouping(span)
                ):
                    yield groups[i][0], groups[j][1]
                    return


def find_card_numbers(text: str, *, strict: bool = False) -> list[tuple[int, int]]:
    """Spans of card numbers in ``text``.

    ``strict`` (the request guard) ignores numbers glued to letters (inside a
    CSRF token, hash or public id) and digit groups shorter than 3 (dates), to
    avoid false positives. Log redaction leaves it off and redacts more.
    """
    spans: list[tuple[int, int]] = []
    for match in _RUN.finditer(text):
        start, end = match.span()
        if strict and (
            (start > 0 and _ALNUM.match(text[start - 1])) or (end < len(text) and _ALNUM.match(text[end]))
        ):
            continue
        for s, e in _candidates(match.group(), strict):
            spans.append((start + s, start + e))
    return spans


def contains_card_number(text: str, *, strict: bool = False) -> bool:
    return bool(find_card_numbers(text, strict=strict))
