from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

from accounts import navigation as nav
from accounts.merchant_roles import role_can
from accounts.roles import STAFF_ROLES


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not getattr(user, "is_verified", lambda: False)():
        return {}
    membership = getattr(request, "membership", None)
    membership = membership if membership else None
    links: list[dict[str, Any]] = []
    path = request.path

    def add(item: nav.NavItem) -> None:
        try:
            url = reverse(item.url_name)
        except NoReverseMatch:
            return
        active = path == url if url == "/" else path.startswith(url)
        links.append({"label": item.label, "url": url, "active": active, "section": item.section})

    if membership is not None:
        for item in nav.items_for("merchant"):
            if item.merchant_action is None or role_can(membership.role, item.merchant_action):
                add(item)
    if user.is_platform_staff:
        held = {g.name for g in user.groups.all()}
        for item in nav.items_for("staff"):
            if item.permission and not user.has_perm(item.permission):
                continue
            if item.staff_roles and not (user.is_superuser or held & set(item.staff_roles)):
                continue
            add(item)
    staff_roles = [STAFF_ROLES[g.name] for g in user.groups.all() if g.name in STAFF_ROLES]
    memberships = list(user.memberships.select_related("merchant")) if membership else []
    return {
        "nav_links": links,
        "current_membership": membership,
        "staff_role_labels": staff_roles,
        "show_admin_link": user.is_staff,
        "other_memberships": [m for m in memberships if membership and m.pk != membership.pk],
    }
