"""Merchant API keys: issue, authenticate, rotate with overlap, revoke."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone

from accounts import merchant_roles
from accounts.models import ApiKey, Membership, Merchant, User
from security import audit
from security.errors import ApplicationError, PermissionDeniedError

KEY_ALPHABET = string.ascii_letters + string.digits
LOOKUP_LENGTH = 12
SECRET_LENGTH = 32
DEFAULT_LIFETIME_DAYS = 90
LIFETIME_CHOICES_DAYS = (30, 90, 180, 365)
ROTATION_OVERLAP = timedelta(hours=24)
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    secret: str  # the full key; shown once, never stored


def _random(length: int) -> str:
    return "".join(secrets.choice(KEY_ALPHABET) for _ in range(length))


def hash_secret(full_key: str) -> str:
    return hashlib.sha256(full_key.encode()).hexdigest()


def _require_manager(actor: User, merchant: Merchant) -> str:
    """The actor's current role, if the role table lets it manage API keys."""
    from accounts.selectors import member_role

    role = member_role(actor, merchant.pk)
    if not merchant_roles.role_can(role, merchant_roles.API_KEYS_MANAGE):
        raise PermissionDeniedError("Only owners, admins and developers manage API keys.")
    return role or ""


def _require_scope_fits(role: str, scope: str) -> None:
    """A key carries no more power than the person who makes it."""
    if not merchant_roles.scope_fits(scope, role):
        raise PermissionDeniedError(
            f"Your role cannot issue a key with {scope} access; choose an access your role has.",
            code="scope_exceeds_role",
        )


def _new_key(
    *, merchant: Merchant, name: str, mode: str, scope: str, lifetime_days: int, actor: User | None
) -> IssuedKey:
    lookup = _random(LOOKUP_LENGTH)
    full = f"fp_{mode}_{lookup}{_random(SECRET_LENGTH)}"
    now = timezone.now()
    key = ApiKey.objects.create(
        merchant=merchant,
        name=name,
        mode=mode,
        scope=scope,
        lookup=lookup,
        secret_hash=hash_secret(full),
        created_by=actor,
        created_at=now,
        expires_at=now + timedelta(days=lifetime_days),
    )
    return IssuedKey(key=key, secret=full)


def api_key_create(
    *,
    actor: User,
    merchant: Merchant,
    name: str,
    scope: str,
    mode: str = ApiKey.Mode.TEST,
    lifetime_days: int = DEFAULT_LIFETIME_DAYS,
) -> IssuedKey:
    """Create a key; the returned secret is the only time anyone sees it."""
    name = name.strip()
    if not name:
        raise ApplicationError("Give the key a name so you can recognise it later.")
    if scope not in ApiKey.Scope.values:
        raise ApplicationError("Scope must be read or write.")
    if mode not in ApiKey.Mode.values:
        raise ApplicationError("Mode must be test or live.")
    if lifetime_days not in LIFETIME_CHOICES_DAYS:
        raise ApplicationError("Choose one of the offered lifetimes.")
    with transaction.atomic():
        merchant = Merchant.objects.select_for_update().get(pk=merchant.pk)
        role = _require_manager(actor, merchant)
        _require_scope_fits(role, scope)
        if mode == ApiKey.Mode.LIVE and merchant.status != Merchant.Status.ACTIVE:
            raise ApplicationError(
                "Live keys are available once your account is approved; use a test key for now."
            )
        issued = _new_key(
            merchant=merchant, name=name, mode=mode, scope=scope, lifetime_days=lifetime_days, actor=actor
        )
        audit.record(
            actor=actor,
            action="api_key.created",
            target=issued.key,
            merchant=merchant,
            details={"scope": scope, "mode": mode, "expires_in_days": lifetime_days},
        )
    return issued


def api_key_rotate(*, actor: User, key: ApiKey, overlap: timedelta = ROTATION_OVERLAP) -> IssuedKey:
    """Issue a replacement; the old key keeps working for ``overlap`` so clients can switch."""
    with transaction.atomic():
        old = ApiKey.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=key.pk)
        role = _require_manager(actor, old.merchant)
        _require_scope_fits(role, old.scope)
        if old.status != "active":
            raise ApplicationError(f"This key is {old.status}; create a new one instead.")
        if old.rotated_to_id:
            raise ApplicationError("This key has already been rotated.")
        lifetime = DEFAULT_LIFETIME_DAYS
        issued = _new_key(
            merchant=old.merchant,
            name=old.name,
            mode=old.mode,
            scope=old.scope,
            lifetime_days=lifetime,
            actor=actor,
        )
        overlap_end = timezone.now() + overlap
        old.expires_at = min(old.expires_at, overlap_end) if old.expires_at else overlap_end
        old.rotated_to = issued.key
        old.save(update_fields=["expires_at", "rotated_to"])
        audit.record(
            actor=actor,
            action="api_key.rotated",
            target=old,
            merchant=old.merchant,
            details={"replacement": issued.key.public_id, "old_key_expires_at": old.expires_at.isoformat()},
        )
    return issued


def api_key_revoke(*, actor: User, key: ApiKey) -> ApiKey:
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=key.pk)
        _require_manager(actor, locked.merchant)
        if locked.revoked_at:
            raise ApplicationError("This key is already revoked.")
        revoke_locked_key(locked, actor=actor)
    return locked


def revoke_locked_key(key: ApiKey, *, actor: User, details: dict[str, Any] | None = None) -> None:
    """Revoke a key its caller has locked in the current transaction, audited as ``api_key.revoked``
    (the one place a key's revocation is written: by its manager, or when its creator leaves)."""
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    audit.record(actor=actor, action="api_key.revoked", target=key, merchant=key.merchant, details=details)


def api_key_creator_role(key: ApiKey) -> str | None:
    """The current role of the key's creator on the key's merchant (None: no longer on the team).

    :func:`api_key_authenticate` reads it with the key; otherwise it is read now.
    """
    if hasattr(key, "creator_role"):
        return key.creator_role  # type: ignore[no-any-return]
    if key.created_by_id is None:
        return None
    return (
        Membership.objects.filter(user_id=key.created_by_id, merchant_id=key.merchant_id)
        .values_list("role", flat=True)
        .first()
    )


class InvalidApiKey(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def api_key_authenticate(raw: str, *, ip: str | None = None) -> ApiKey:
    """The active key for a presented secret, or :class:`InvalidApiKey` with a reason."""
    raw = (raw or "").strip()
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != "fp" or parts[1] not in ApiKey.Mode.values:
        raise InvalidApiKey("That is not a fintech_portal API key.")
    body = parts[2]
    if len(body) != LOOKUP_LENGTH + SECRET_LENGTH:
        raise InvalidApiKey("That is not a fintech_portal API key.")
    key = (
        ApiKey.objects.select_related("merchant")
        .annotate(
            # The creator's current role here, read in the same query: a key's power is its scope
            # within this role, and a key whose creator left the team (or was deactivated) is refused.
            creator_role=Subquery(
                Membership.objects.filter(
                    user_id=OuterRef("created_by_id"), merchant_id=OuterRef("merchant_id")
                ).values("role")[:1]
            ),
            creator_active=F("created_by__is_active"),
        )
        .filter(lookup=body[:LOOKUP_LENGTH])
        .first()
    )
    if key is None or not hmac.compare_digest(key.secret_hash, hash_secret(raw)):
        raise InvalidApiKey("Invalid API key.")
    now = timezone.now()
    status = key.status_at(now)
    if status == "revoked":
        raise InvalidApiKey("This API key has been revoked.")
    if status == "expired":
        raise InvalidApiKey("This API key has expired. Create or rotate a key in Developers.")
    if key.merchant.status == Merchant.Status.SUSPENDED:
        raise InvalidApiKey("This merchant account is suspended.")
    if not key.creator_role or not key.creator_active:  # type: ignore[attr-defined]
        raise InvalidApiKey("The person who created this API key is no longer on the team; create a new key.")
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        # At most one write a minute per key, whatever the request rate.
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now, last_used_ip=ip)
        key.last_used_at = now
    return key
