"""Keyset pages on ``(created_at, id)``, newest first: the one paginator of the dashboard and the API.

A page is found from an *anchor*, the ``(created_at, pk)`` of a row the user came
from, so each page costs the same whatever its depth (no OFFSET) and rows created
meanwhile never shift a page. Callers decide what an unknown cursor means (the
dashboard shows the first page, the API answers 400).
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from django.db.models import Model, Q, QuerySet

M = TypeVar("M", bound=Model)
Anchor = tuple[datetime, int]


def keyset_anchor(base: QuerySet[M], public_id: str) -> Anchor | None:
    """The position of the row ``public_id`` in ``base`` (already scoped to the merchant), if it is there."""
    row = base.filter(public_id=public_id).values("created_at", "pk").first()
    return (row["created_at"], row["pk"]) if row else None


def keyset_rows(
    filtered: QuerySet[M], *, anchor: Anchor | None, before: bool, limit: int
) -> tuple[list[M], bool]:
    """Up to ``limit`` rows of ``filtered``, newest first, and whether more lie beyond them.

    With an anchor: the rows older than it (``before=False``) or newer than it
    (``before=True``, still returned newest first; "more" then means newer rows).
    """
    if anchor is None:
        rows = list(filtered.order_by("-created_at", "-pk")[: limit + 1])
    elif before:
        at, pk = anchor
        qs = filtered.filter(created_at__gte=at).filter(Q(created_at__gt=at) | Q(pk__gt=pk))
        rows = list(qs.order_by("created_at", "pk")[: limit + 1])
    else:
        at, pk = anchor
        qs = filtered.filter(created_at__lte=at).filter(Q(created_at__lt=at) | Q(pk__lt=pk))
        rows = list(qs.order_by("-created_at", "-pk")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    if anchor is not None and before:
        rows.reverse()
    return rows, more
