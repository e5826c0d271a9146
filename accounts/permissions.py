"""View guards for merchant roles and staff permissions."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse


def merchant_member_required(
    *roles: str,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """The user must belong to a merchant (with one of ``roles`` when given).

    The view receives the membership as ``request.membership`` and must scope
    every read to ``request.membership.merchant``.
    """

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            membership = request.membership  # type: ignore[attr-defined]
            if not membership:
                raise PermissionDenied("This page is for members of a merchant team.")
            if roles and membership.role not in roles:
                raise PermissionDenied("Your role on this team does not allow this.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def staff_permission_required(
    perm: str,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.has_perm(perm):
                raise PermissionDenied("Your staff role does not include this area.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
