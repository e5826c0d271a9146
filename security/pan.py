"""Finding payment card numbers (PANs) in text.

A card number here is a run of 13-19 digits, optionally with single spaces or
dashes between digit groups, that passes the Luhn check and starts with 2-6
(the ISO/IEC 7812 industry digits of every card network we take: Mastercard
2/5, Amex/Diners/JCB 3, Visa 4, Discover/UnionPay/Maestro 6). That keeps
millisecond and microsecond Unix timestamps (which start with 1), phone
numbers, amounts, TOTP and backup codes from counting as cards.

The search is linear in the text, whatever the text (it runs on unauthenticated
request bodies), and does Python work only where a card could start:

* one regular-expression pass finds the *stretches* of digits, spaces and
  dashes (a single character class, so ``1 1 1 ...`` costs about what letters
  cost);
* a stretch without separators is a card only if it has 13-19 digits: longer
  unseparated digit strings are skipped at once;
* in a stretch with separators a card is a window of whole digit groups, single
  separators between them. A window can only start at a group whose first digit
  is 2-6 (and, in the strict mode of the request guard, whose group has 3 digits
  or more); a second regular-expression pass over the stretch finds those, so
  ``1 1 1 ...`` or ``11 17 10 ...`` needs no Python work per digit;
* from each possible start only the next 38 characters are looked at (19 digits
  with single separators span 37), and each of its at most 7 windows (3 in
  strict mode) gets one Luhn check: a constant amount of work per start.

That work per start is Python work, about a thousand times the cost of a
character the regular expressions cross, so a body crafted to be all starts
(``234 234 234 ...``) would still cost hundreds of times a body of letters. A
caller that searches untrusted input (the request guard) passes a
:class:`CheckBudget`: each Python-level check (a window start, or a lone 13-19
digit string) spends one unit, and :class:`TooManyToCheck` is raised when it
runs out. Ordinary text has a handful of such places per page; the guard grants
a few dozen plus one per few kilobytes, and refuses the rest.

:class:`ScanStats` counts that work, so tests can bound it without timing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

MIN_DIGITS, MAX_DIGITS = 13, 19
# 19 digits with a single separator between each: the longest text a card can span.
_MAX_SPAN = 2 * MAX_DIGITS - 1

# A stretch of digits, spaces and dashes from a digit to a digit: one character class, so the
# regular-expression engine crosses ``1 1 1 ...`` as fast as letters. A card lies inside one *run*
# of it: digits separated by single separators (a doubled separator ends a run).
_STRETCH = re.compile(r"[0-9][0-9 -]*[0-9]")
_GAP = re.compile(r"[ -]{2}")
_ALNUM = re.compile(r"[0-9A-Za-z]")
# Where a window of whole groups may start: a group start whose digit is an industry digit we
# take; the strict guard also wants the first group to have 3 digits or more (cards are written
# in groups of 3+, dates are not).
_START_STRICT = re.compile(r"[2-6](?<![0-9][2-6])[0-9]{2}")
_START_LOOSE = re.compile(r"[2-6](?<![0-9][2-6])")
_SEPARATORS = str.maketrans("", "", " -")
_DASH_TO_SPACE = str.maketrans("-", " ")
_DOUBLED = bytes.maketrans(b"0123456789", bytes([0, 2, 4, 6, 8, 1, 3, 5, 7, 9]))


class TooManyToCheck(Exception):
    """The text holds more possible card numbers than the caller's :class:`CheckBudget` allows."""


@dataclass
class CheckBudget:
    """Python-level checks a search may still make (see the module docstring)."""

    left: int

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise TooManyToCheck


@dataclass
class ScanStats:
    """Work done by the searches inside :func:`counting`: deterministic, unlike a timing.

    ``searches``: texts searched; ``chars``: characters a regular expression went through
    (each text once, each digit stretch that could hold a card once more) plus those
    looked at from each window start; ``starts``: window starts examined in Python;
    ``luhn``: Luhn checks made.
    """

    searches: int = 0
    chars: int = 0
    starts: int = 0
    luhn: int = 0


_COUNTING: ContextVar[ScanStats | None] = ContextVar("card_search_counting", default=None)


@contextmanager
def counting() -> Iterator[ScanStats]:
    """Count the work of every card-number search in this context (tests and benchmarks)."""
    stats = ScanStats()
    token = _COUNTING.set(stats)
    try:
        yield stats
    finally:
        _COUNTING.reset(token)


def luhn_ok(digits: str) -> bool:
    if not digits.isascii() or not digits.isdigit():
        return False
    return _luhn_sum_ok(digits.encode("ascii"), len(digits))


def is_card_number(digits: str) -> bool:
    return MIN_DIGITS <= len(digits) <= MAX_DIGITS and digits[0] in "23456" and luhn_ok(digits)


def _luhn_sum_ok(raw: bytes, count: int) -> bool:
    """Luhn on the first ``count`` ASCII digits of ``raw``: every second digit from the right doubled."""
    plain = sum(raw[count - 1 :: -2]) - 48 * ((count + 1) // 2)
    return (plain + sum(raw[count - 2 :: -2].translate(_DOUBLED))) % 10 == 0


def _card_at(stretch: str, start: int, strict: bool, stats: ScanStats | None) -> int | None:
    """End of the longest card number made of whole groups starting at ``stretch[start]``, if any."""
    chunk = stretch[start : start + _MAX_SPAN + 1]
    if stats is not None:
        stats.starts += 1
        stats.chars += len(chunk)
    groups = chunk.translate(_DASH_TO_SPACE).split(" ")
    after = start + len(chunk)
    if after < len(stretch) and stretch[after] not in " -":
        groups.pop()  # cut by the chunk: its end lies more than 19 digits away
    windows: list[tuple[int, int]] = []  # (digits, characters) of each whole-group window
    count = end = 0
    for group in groups:
        size = len(group)
        if not size:
            break  # a doubled separator ends the run
        count += size
        end += size
        if count > MAX_DIGITS:
            break
        if count >= MIN_DIGITS:
            windows.append((count, end))
        if strict and size < 3:
            break  # a short group may end a card (4-4-4-2) but not sit inside one
        end += 1
    if not windows:
        return None
    raw = chunk.translate(_SEPARATORS).encode("ascii")
    for count, end in reversed(windows):
        if stats is not None:
            stats.luhn += 1
        if _luhn_sum_ok(raw, count):
            return start + end
    return None


def _cards_in_stretch(
    stretch: str, strict: bool, stats: ScanStats | None, budget: CheckBudget | None
) -> Iterator[tuple[int, int]]:
    """Spans (within ``stretch``) of non-overlapping card numbers made of whole digit groups."""
    if " " not in stretch and "-" not in stretch:
        # One group: a card only if it is one whole (longer unseparated strings are skipped).
        if MIN_DIGITS <= len(stretch) <= MAX_DIGITS and stretch[0] in "23456":
            if budget is not None:
                budget.spend()
            if stats is not None:
                stats.luhn += 1
            if _luhn_sum_ok(stretch.encode("ascii"), len(stretch)):
                yield 0, len(stretch)
        return
    if len(stretch) - stretch.count(" ") - stretch.count("-") < MIN_DIGITS:
        return
    if stats is not None:
        stats.chars += len(stretch)
    resume = 0
    for match in (_START_STRICT if strict else _START_LOOSE).finditer(stretch):
        if match.start() < resume:
            continue  # inside a card already found
        if budget is not None:
            budget.spend()
        end = _card_at(stretch, match.start(), strict, stats)
        if end is not None:
            resume = end
            yield match.start(), end


def iter_card_numbers(
    text: str, *, strict: bool = False, budget: CheckBudget | None = None
) -> Iterator[tuple[int, int]]:
    """Spans of card numbers in ``text``, from left to right (lazily: stop early to stop the scan).

    ``strict`` (the request guard) ignores numbers glued to letters (inside a
    CSRF token, hash or public id) and digit groups shorter than 3 (dates), to
    avoid false positives. Log redaction leaves it off and redacts more.
    ``budget`` bounds the Python-level checks (:class:`TooManyToCheck` when spent).
    """
    stats = _COUNTING.get()
    if stats is not None:
        stats.searches += 1
        stats.chars += len(text)
    for match in _STRETCH.finditer(text):
        lo, hi = match.span()
        stretch = match.group()
        if strict and lo > 0 and _ALNUM.match(text, lo - 1):
            # Glued to a letter or digit: the first run of the stretch is part of a longer word.
            gap = _GAP.search(stretch)
            if gap is None:
                continue
            rest = stretch[gap.end() :].lstrip(" -")
            lo += len(stretch) - len(rest)
            stretch = rest
        if strict and hi < len(text) and _ALNUM.match(text, hi):
            last = max(stretch.rfind(pair) for pair in ("  ", " -", "- ", "--"))
            if last < 0:
                continue
            stretch = stretch[:last].rstrip(" -")
        if len(stretch) < MIN_DIGITS:
            continue
        for s, e in _cards_in_stretch(stretch, strict, stats, budget):
            yield lo + s, lo + e


def find_card_numbers(text: str, *, strict: bool = False) -> list[tuple[int, int]]:
    """Spans of card numbers in ``text`` (see :func:`iter_card_numbers`)."""
    return list(iter_card_numbers(text, strict=strict))


def contains_card_number(text: str, *, strict: bool = False, budget: CheckBudget | None = None) -> bool:
    return next(iter_card_numbers(text, strict=strict, budget=budget), None) is not None
