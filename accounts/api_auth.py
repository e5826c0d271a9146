"""DRF authentication and permissions for the merchant API.

Two ways in: a merchant API key (``Authorization: Bearer fp_test_…``) or a
browser session that has passed the second factor.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import exceptions, permissions, throttling
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, get_authorization_header
from rest_framework.request import Request

from accounts import merchant_roles
from accounts.api_keys import InvalidApiKey, api_key_authenticate, api_key_creator_role
from accounts.models import ApiKey, Merchant
from security.client_ip import client_ip


class ApiKeyPrincipal:
    """Who is calling when a request is authenticated by an API key."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, key: ApiKey) -> None:
        self.api_key = key
        self.merchant: Merchant = key.merchant
        self.public_id = key.public_id
        self.email = ""

    def __str__(self) -> str:
        return f"API key {self.api_key.display_prefix}…"

    def is_verified(self) -> bool:
        return True

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[ApiKeyPrincipal, ApiKey] | None:
        header = get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise exceptions.AuthenticationFailed("Send your API key as 'Authorization: Bearer <key>'.")
        try:
            key = api_key_authenticate(token, ip=client_ip(request._request))
        except InvalidApiKey as exc:
            raise exceptions.AuthenticationFailed(exc.message) from exc
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="fintech_portal"'


class VerifiedSessionAuthentication(SessionAuthentication):
    """A browser session counts only once its second factor is verified."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        result = super().authenticate(request)
        if result is None:
            return None
        user, auth = result
        if not user.is_verified():
            return None
        return user, auth


def api_merchant(request: Request) -> Merchant | None:
    """The merchant an API request acts for: the key's, or the session's current one."""
    if isinstance(request.auth, ApiKey):
        return request.auth.merchant
    membership = getattr(request._request, "membership", None)
    return membership.merchant if membership else None


def required_action(request: Request, view: Any) -> str:
    """The role-table action a request performs: the view's ``api_actions`` for its method.

    Reads default to ``payments.view``; a write the view does not name is refused (fail closed).
    """
    declared: dict[str, str] = getattr(view, "api_actions", {})
    action = declared.get(request.method or "")
    if action is None and request.method in permissions.SAFE_METHODS:
        action = merchant_roles.PAYMENTS_VIEW
    if action is None:
        raise exceptions.PermissionDenied("This endpoint does not accept that method.")
    return merchant_roles.check_action(action)


def _read_only(role: str | None) -> bool:
    """The role may do none of the API's writes."""
    writes = (
        merchant_roles.SCOPE_ACTIONS[ApiKey.Scope.WRITE] - merchant_roles.SCOPE_ACTIONS[ApiKey.Scope.READ]
    )
    return not (writes & merchant_roles.actions_for(role))


class MerchantApiAccess(permissions.BasePermission):
    """Every request is checked against the one role table (:mod:`accounts.merchant_roles`).

    A team session acts with the member's role. An API key acts with its scope *within its
    creator's current role*: a developer's write key cannot refund, and lowering the creator's
    role limits the key at once.
    """

    message = "This API needs a merchant API key or a merchant team session."

    def has_permission(self, request: Request, view: Any) -> bool:
        action = required_action(request, view)
        if isinstance(request.auth, ApiKey):
            key = request.auth
            if action not in merchant_roles.SCOPE_ACTIONS.get(key.scope, frozenset()):
                raise exceptions.PermissionDenied("This API key is read-only; use a key with write scope.")
            creator_role = api_key_creator_role(key)
            if not merchant_roles.key_can(key.scope, creator_role, action):
                raise exceptions.PermissionDenied(merchant_roles.key_refusal(creator_role, action))
            return True
        membership = getattr(request._request, "membership", None)
        if not request.user or not request.user.is_authenticated or not membership:
            return False
        if not merchant_roles.role_can(membership.role, action):
            prefix = "Your role on this team is read-only. " if _read_only(membership.role) else ""
            raise exceptions.PermissionDenied(prefix + merchant_roles.refusal(membership.role, action))
        return True


class ApiRateThrottle(throttling.SimpleRateThrottle):
    """Per-key (or per-user) request budget; answers 429 with ``Retry-After``."""

    scope = "api"

    def get_rate(self) -> str:
        return settings.API_RATE_LIMIT

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, ApiKey):
            ident = f"key:{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{client_ip(request._request)}"  # not DRF's get_ident: see security.client_ip
        return self.cache_format % {"scope": self.scope, "ident": ident}
