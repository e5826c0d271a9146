"""Guarded landing pages for product areas whose features arrive in later releases.

Each renders an honest empty state (what the area will hold) behind the same
role checks the real pages will use, so navigation and access rules are in place.
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def area_page(
    *,
    title: str,
    description: str,
    merchant: bool = False,
    staff_roles: tuple[str, ...] = (),
) -> Callable[[HttpRequest], HttpResponse]:
    def view(request: HttpRequest) -> HttpResponse:
        user = request.user
        if merchant:
            if not request.membership:  # type: ignore[attr-defined]
                raise PermissionDenied("This page is for members of a merchant team.")
        else:
            held = set(user.groups.values_list("name", flat=True))
            if not user.is_superuser and not (
                user.is_platform_staff and (not staff_roles or held & set(staff_roles))
            ):
                raise PermissionDenied("Your staff role does not include this area.")
        return render(request, "area_empty.html", {"title": title, "description": description})

    return view
