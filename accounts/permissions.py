"""View guards for merchant roles and staff permissions."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from accounts import merchant_roles


def merchant_member_required(
    action: str | None = None,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """The user must belong to a merchant, in a role the role table allows ``action`` for.

    ``action`` is a name from :mod:`accounts.merchant_roles` (checked when the view is
    declared, so a typo fails at import). The view receives the membership as
    ``request.membership`` and must scope every read to ``request.membership.merchant``.
    """
    if action is not None:
        merchant_roles.check_action(action)

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            membership = request.membership  # type: ignore[attr-defined]
            if not membership:
                raise PermissionDenied("This page is for members of a merchant team.")
            if action is not None and not merchant_roles.role_can(membership.role, action):
                raise PermissionDenied(merchant_roles.refusal(membership.role, action))
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
