"""Keyset (cursor) pagination for the merchant API, newest first, on ``(created_at, id)``.

A page is ``{"object": "list", "data": [...], "has_more": bool, "next_cursor": id}``.
The cursor is the public id of an object in the list: ``starting_after=<id>``
gives the page after it, ``ending_before=<id>`` the page before it. Each page
costs the same whatever its depth (no OFFSET), and rows created meanwhile never
shift a page.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model, QuerySet
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from rest_framework.serializers import ValidationError

from payments.keyset import keyset_anchor, keyset_rows

DEFAULT_LIMIT = 10
MAX_LIMIT = 100

M = TypeVar("M", bound=Model)

PARAMETERS = [
    OpenApiParameter(
        "limit", int, description=f"Objects per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})."
    ),
    OpenApiParameter(
        "starting_after", str, description="A cursor (an object id): the page of objects older than it."
    ),
    OpenApiParameter(
        "ending_before", str, description="A cursor (an object id): the page of objects newer than it."
    ),
]


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValidationError({"limit": [f"Must be a whole number from 1 to {MAX_LIMIT}."]})
    return int(raw)


def keyset_page(
    request: Request, base: QuerySet[M], filtered: QuerySet[M]
) -> tuple[list[M], bool, dict[str, Any]]:
    """One page of ``filtered`` (newest first); the cursor is looked up in ``base`` (merchant-scoped).

    Returns (objects, has_more, links) where links has ``next_cursor``.
    """
    limit = _limit(request)
    after = request.query_params.get("starting_after")
    before = request.query_params.get("ending_before")
    if after and before:
        raise ValidationError({"starting_after": ["Send starting_after or ending_before, not both."]})
    cursor_id = after or before
    anchor = keyset_anchor(base, cursor_id) if cursor_id else None
    if cursor_id and anchor is None:
        field = "starting_after" if after else "ending_before"
        raise ValidationError({field: ["No object with this id in this list."]})
    rows, has_more = keyset_rows(filtered, anchor=anchor, before=bool(before), limit=limit)
    next_cursor = getattr(rows[-1], "public_id", None) if rows and (has_more or before) else None
    return rows, has_more, {"next_cursor": next_cursor}


def page_body(request: Request, data: list[dict[str, Any]], has_more: bool, links: dict[str, Any]) -> dict:
    return {"object": "list", "url": request.path, "data": data, "has_more": has_more, **links}
