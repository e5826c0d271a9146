"""Writes for people, merchants, teams and second factors.

Every function here runs in one transaction, locks what it changes, checks the
current state, and writes an audit event. Errors a user can fix are raised as
:class:`security.errors.ApplicationError` and leave nothing half-written.
"""

from __future__ import annotations

import secrets
from base64 import b32encode
from binascii import unhexlify
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django_otp.models import Device

from accounts import merchant_roles
from accounts.api_keys import revoke_locked_key
from accounts.models import (
    BackupCode,
    BackupCodeDevice,
    EncryptedTOTPDevice,
    Invitation,
    Membership,
    Merchant,
    MerchantStatusChange,
    Role,
    User,
    normalize_email,
)
from security import audit
from security.errors import ApplicationError, IllegalTransition, PermissionDeniedError

INVITATION_TTL = timedelta(hours=72)
BACKUP_CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
BACKUP_CODE_LENGTH = 10

# --- Merchants -------------------------------------------------------------------

MERCHANT_TRANSITIONS: dict[str, frozenset[str]] = {
    Merchant.Status.ONBOARDING: frozenset({Merchant.Status.ACTIVE, Merchant.Status.SUSPENDED}),
    Merchant.Status.ACTIVE: frozenset({Merchant.Status.SUSPENDED}),
    Merchant.Status.SUSPENDED: frozenset({Merchant.Status.ACTIVE}),
}


def merchant_create(
    *,
    actor: User | None,
    display_name: str,
    legal_name: str,
    country: str,
    data_region: str,
    owner: User,
) -> Merchant:
    """Create a merchant in onboarding status with ``owner`` as its first owner."""
    country = country.strip().upper()
    if len(country) != 2 or not country.isalpha():
        raise ApplicationError("Country must be a two-letter ISO code, for example GB or US.")
    if data_region not in Merchant.Region.values:
        raise ApplicationError("Data region must be 'eu' or 'us'.")
    with transaction.atomic():
        merchant = Merchant.objects.create(
            display_name=display_name.strip(),
            legal_name=legal_name.strip(),
            country=country,
            data_region=data_region,
        )
        Membership.objects.create(user=owner, merchant=merchant, role=Role.OWNER)
        audit.record(
            actor=actor,
            action="merchant.created",
            target=merchant,
            merchant=merchant,
            details={"owner": owner.public_id, "region": data_region},
        )
    return merchant


def merchant_set_status(*, actor: User | None, merchant: Merchant, status: str, reason: str = "") -> Merchant:
    with transaction.atomic():
        locked = Merchant.objects.select_for_update().get(pk=merchant.pk)
        allowed = MERCHANT_TRANSITIONS.get(locked.status, frozenset())
        if status not in allowed:
            raise IllegalTransition(f"A merchant cannot move from {locked.status} to {status}.")
        previous = locked.status
        locked.status = status
        locked.save(update_fields=["status", "updated_at"])
        MerchantStatusChange.objects.create(
            merchant=locked,
            from_status=previous,
            to_status=status,
            reason=reason,
            changed_by=actor,
        )
        audit.record(
            actor=actor,
            action="merchant.status_changed",
            target=locked,
            merchant=locked,
            details={"from": previous, "to": status, "reason": reason[:200]},
        )
    merchant.status = status
    return locked


# --- Team: roles and membership --------------------------------------------------------


def _membership_of(user: User, merchant: Merchant) -> Membership | None:
    return Membership.objects.filter(user=user, merchant=merchant).first()


def _require_action(actor: User, merchant: Merchant, action: str) -> Membership:
    """The actor's membership, if its current role allows ``action`` (the role table)."""
    membership = _membership_of(actor, merchant)  # returned: callers act on it
    role = membership.role if membership is not None else None
    if membership is None or not merchant_roles.role_can(role, action):
        raise PermissionDeniedError(merchant_roles.refusal(role, action))
    return membership


def _member_grants_follow_role(
    *, actor: User, merchant: Merchant, member: User, old_role: str, new_role: str | None, why: str
) -> None:
    """What a member handed out follows their role: their API keys and pending invitations."""
    _member_keys_follow_role(
        actor=actor, merchant=merchant, member=member, old_role=old_role, new_role=new_role, why=why
    )
    _member_invitations_follow_role(actor=actor, merchant=merchant, member=member, new_role=new_role, why=why)


def _member_invitations_follow_role(
    *, actor: User, merchant: Merchant, member: User, new_role: str | None, why: str
) -> None:
    """Pending invitations the member could no longer send are withdrawn (an invitation
    to join as owner needs an owner, any other an owner or admin)."""
    pending = Invitation.objects.select_for_update().filter(
        merchant=merchant,
        invited_by=member,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
    )
    for invitation in pending.order_by("pk"):
        needed = (
            merchant_roles.TEAM_INVITE_OWNER if invitation.role == Role.OWNER else merchant_roles.TEAM_INVITE
        )
        if merchant_roles.role_can(new_role, needed):
            continue
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        audit.record(
            actor=actor,
            action="team.invitation_revoked",
            target=invitation,
            merchant=merchant,
            details={"reason": why, "inviter": member.public_id, "inviter_role": new_role},
        )


def _member_keys_follow_role(
    *, actor: User, merchant: Merchant, member: User, old_role: str, new_role: str | None, why: str
) -> None:
    """A member's API keys never outlive or outrank them (same transaction as the team change).

    Removed, or moved to a role that may not hold keys: each live key is revoked. Moved to a
    role that allows less: each key whose power shrinks is audited as limited (its power is
    its scope within its creator's current role, read on every request, so the limit is
    already in force).
    """
    from accounts.models import ApiKey

    keys = ApiKey.objects.select_for_update().filter(
        merchant=merchant, created_by=member, revoked_at__isnull=True
    )
    now = timezone.now()
    revoke = new_role is None or not merchant_roles.role_can(new_role, merchant_roles.API_KEYS_MANAGE)
    for key in keys.order_by("pk"):
        if key.expires_at is not None and key.expires_at <= now:
            continue
        details = {"reason": why, "creator": member.public_id, "from_role": old_role, "to_role": new_role}
        if revoke:
            key.merchant = merchant
            revoke_locked_key(key, actor=actor, details=details)
            continue
        before = merchant_roles.key_actions(key.scope, old_role)
        after = merchant_roles.key_actions(key.scope, new_role)
        if before - after:
            audit.record(
                actor=actor,
                action="api_key.limited",
                target=key,
                merchant=merchant,
                details={**details, "lost": sorted(before - after)},
            )


def membership_change_role(*, actor: User, membership: Membership, role: str) -> Membership:
    if role not in Role.values:
        raise ApplicationError("Choose one of the listed roles.")
    with transaction.atomic():
        merchant = Merchant.objects.select_for_update().get(pk=membership.merchant_id)
        _require_action(actor, merchant, merchant_roles.TEAM_MANAGE)
        locked = Membership.objects.select_for_update().get(pk=membership.pk)
        if locked.role == role:
            return locked
        if locked.role == Role.OWNER and role != Role.OWNER:
            owners = Membership.objects.filter(merchant=merchant, role=Role.OWNER).count()
            if owners <= 1:
                raise ApplicationError("This is the only owner. Make someone else an owner first.")
        previous = locked.role
        locked.role = role
        locked.save(update_fields=["role"])
        audit.record(
            actor=actor,
            action="team.role_changed",
            target=locked.user,
            merchant=merchant,
            details={"from": previous, "to": role},
        )
        _member_grants_follow_role(
            actor=actor,
            merchant=merchant,
            member=locked.user,
            old_role=previous,
            new_role=role,
            why="role_changed",
        )
    return locked


def membership_remove(*, actor: User, membership: Membership) -> None:
    with transaction.atomic():
        merchant = Merchant.objects.select_for_update().get(pk=membership.merchant_id)
        _require_action(actor, merchant, merchant_roles.TEAM_MANAGE)
        locked = Membership.objects.select_for_update().filter(pk=membership.pk).first()
        if locked is None:
            raise ApplicationError("That teammate has already been removed.")
        if locked.role == Role.OWNER:
            owners = Membership.objects.filter(merchant=merchant, role=Role.OWNER).count()
            if owners <= 1:
                raise ApplicationError("You cannot remove the only owner.")
        removed_user = locked.user
        locked.delete()
        audit.record(
            actor=actor,
            action="team.member_removed",
            target=removed_user,
            merchant=merchant,
            details={"role": locked.role},
        )
        _member_grants_follow_role(
            actor=actor,
            merchant=merchant,
            member=removed_user,
            old_role=locked.role,
            new_role=None,
            why="member_removed",
        )


# --- Invitations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    token: str

    @property
    def path(self) -> str:
        return reverse("invitation_accept", kwargs={"token": self.token})


def invitation_create(*, actor: User, merchant: Merchant, email: str, role: str) -> IssuedInvitation:
    """Invite ``email`` to join ``merchant`` as ``role``; emails a single-use link."""
    email = normalize_email(email)
    if role not in Role.values:
        raise ApplicationError("Choose one of the listed roles.")
    with transaction.atomic():
        merchant = Merchant.objects.select_for_update().get(pk=merchant.pk)
        inviter = _require_action(actor, merchant, merchant_roles.TEAM_INVITE)
        if role == Role.OWNER and not merchant_roles.role_can(inviter.role, merchant_roles.TEAM_INVITE_OWNER):
            raise PermissionDeniedError("Only an owner can invite another owner.")
        if Membership.objects.filter(merchant=merchant, user__email=email).exists():
            raise ApplicationError("That person is already on this team.")
        now = timezone.now()
        # A new invitation replaces any pending one for the same address.
        Invitation.objects.filter(
            merchant=merchant,
            email=email,
            accepted_at__isnull=True,
            revoked_at__isnull=True,
        ).update(revoked_at=now)
        token = secrets.token_urlsafe(32)
        invitation = Invitation.objects.create(
            merchant=merchant,
            email=email,
            role=role,
            token_hash=Invitation.hash_token(token),
            invited_by=actor,
            created_at=now,
            expires_at=now + INVITATION_TTL,
        )
        audit.record(
            actor=actor,
            action="team.invitation_sent",
            target=invitation,
            merchant=merchant,
            details={"role": role},
        )
        issued = IssuedInvitation(invitation=invitation, token=token)
        transaction.on_commit(lambda: _send_invitation_email(issued, actor))
    return issued


def _send_invitation_email(issued: IssuedInvitation, actor: User) -> None:
    invitation = issued.invitation
    context = {
        "merchant": invitation.merchant,
        "inviter": actor.get_full_name(),
        "role": invitation.get_role_display(),
        "url": f"{settings.SITE_URL.rstrip('/')}{issued.path}",
        "expires_at": invitation.expires_at,
    }
    send_mail(
        subject=f"You're invited to join {invitation.merchant.display_name} on fintech_portal",
        message=render_to_string("accounts/email/invitation.txt", context),
        from_email=None,
        recipient_list=[invitation.email],
    )


def invitation_revoke(*, actor: User, invitation: Invitation) -> Invitation:
    with transaction.atomic():
        locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
        _require_action(actor, locked.merchant, merchant_roles.TEAM_INVITE)
        if locked.status != "pending":
            raise ApplicationError(f"This invitation is already {locked.status}.")
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at"])
        audit.record(actor=actor, action="team.invitation_revoked", target=locked, merchant=locked.merchant)
    return locked


def invitation_lookup(token: str) -> Invitation | None:
    """The invitation for a raw token, or None. Does not check its status."""
    if not token or len(token) > 200:
        return None
    return (
        Invitation.objects.select_related("merchant").filter(token_hash=Invitation.hash_token(token)).first()
    )


def _lock_pending_invitation(token: str) -> Invitation:
    invitation = invitation_lookup(token)
    if invitation is None:
        raise ApplicationError("This invitation link is not valid.", status_code=404)
    locked = (
        Invitation.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=invitation.pk)
    )
    status = locked.status
    if status == "accepted":
        raise ApplicationError("This invitation has already been used.", status_code=410)
    if status == "revoked":
        raise ApplicationError("This invitation was withdrawn.", status_code=410)
    if status == "expired":
        raise ApplicationError("This invitation has expired. Ask your team for a new one.", status_code=410)
    return locked


def invitation_accept_new_user(*, token: str, password: str, full_name: str = "") -> User:
    """Create the invitee's account and membership; the link stops working."""
    with transaction.atomic():
        invitation = _lock_pending_invitation(token)
        if User.objects.filter(email=invitation.email).exists():
            raise ApplicationError(
                "An account with this email already exists. Sign in, then open the link again."
            )
        candidate = User(email=invitation.email, full_name=full_name.strip())
        try:
            validate_password(password, user=candidate)
        except ValidationError as exc:
            raise ApplicationError(" ".join(exc.messages), code="weak_password") from exc
        candidate.set_password(password)
        try:
            candidate.save()
        except IntegrityError as exc:  # a concurrent acceptance created it first
            raise ApplicationError("This invitation has already been used.", status_code=410) from exc
        _finish_acceptance(invitation, candidate)
    return candidate


def invitation_accept_existing_user(*, token: str, user: User) -> Membership:
    with transaction.atomic():
        invitation = _lock_pending_invitation(token)
        if normalize_email(user.email) != invitation.email:
            raise PermissionDeniedError("This invitation was sent to a different email address.")
        return _finish_acceptance(invitation, user)


def _finish_acceptance(invitation: Invitation, user: User) -> Membership:
    membership, _ = Membership.objects.get_or_create(
        user=user, merchant=invitation.merchant, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit.record(
        actor=user,
        action="team.invitation_accepted",
        target=invitation,
        merchant=invitation.merchant,
        details={"role": invitation.role},
    )
    return membership


# --- Second factor ----------------------------------------------------------------------------


class CodeThrottled(ApplicationError):
    status_code = 429
    code = "throttled"


def totp_secret_base32(device: EncryptedTOTPDevice) -> str:
    """The secret as authenticator apps expect it (RFC 4648 base32, no padding)."""
    return b32encode(unhexlify(device.key.encode())).decode().rstrip("=")


def confirmed_totp(user: User) -> EncryptedTOTPDevice | None:
    return EncryptedTOTPDevice.objects.filter(user=user, confirmed=True).order_by("-id").first()


def has_second_factor(user: User) -> bool:
    return EncryptedTOTPDevice.objects.filter(user=user, confirmed=True).exists()


def totp_enrolment_start(*, user: User) -> EncryptedTOTPDevice:
    """Return this user's pending (unconfirmed) TOTP device, creating one if needed."""
    with transaction.atomic():
        pending = (
            EncryptedTOTPDevice.objects.select_for_update()
            .filter(user=user, confirmed=False)
            .order_by("-id")
            .first()
        )
        if pending is None:
            pending = EncryptedTOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)
    return pending


def totp_enrolment_confirm(*, user: User, code: str) -> tuple[EncryptedTOTPDevice, list[str]]:
    """Confirm the pending device with a correct code.

    Replaces any earlier authenticator and issues a fresh set of backup codes,
    returned once in clear and stored only hashed.
    """
    code = _clean_code(code)
    with transaction.atomic():
        device = (
            EncryptedTOTPDevice.objects.select_for_update()
            .filter(user=user, confirmed=False)
            .order_by("-id")
            .first()
        )
        if device is None:
            raise ApplicationError("Start the set-up again: no authenticator is waiting.")
        allowed, info = device.verify_is_allowed()
        if not allowed:
            raise _throttled(info)
        if not device.verify_token(code):
            audit.record(actor=user, action="2fa.enrolment_code_wrong", target=user)
            raise ApplicationError("That code is not right. Check the time on your phone and try again.")
        replaced = EncryptedTOTPDevice.objects.filter(user=user, confirmed=True).exclude(pk=device.pk)
        was_reenrolment = replaced.exists()
        replaced.delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = _issue_backup_codes(user)
        audit.record(
            actor=user,
            action="2fa.reenrolled" if was_reenrolment else "2fa.enrolled",
            target=user,
        )
    return device, codes


def _issue_backup_codes(user: User) -> list[str]:
    BackupCodeDevice.objects.filter(user=user).delete()
    device = BackupCodeDevice.objects.create(user=user, name="Backup codes", confirmed=True)
    codes = [
        "".join(secrets.choice(BACKUP_CODE_ALPHABET) for _ in range(BACKUP_CODE_LENGTH))
        for _ in range(settings.BACKUP_CODE_COUNT)
    ]
    BackupCode.objects.bulk_create(
        [BackupCode(device=device, code_hash=device.hash_code(code)) for code in codes]
    )
    return [f"{c[:5]}-{c[5:]}" for c in codes]


def backup_codes_regenerate(*, user: User) -> list[str]:
    """A new set of 10 codes; the old set stops working."""
    with transaction.atomic():
        if not has_second_factor(user):
            raise ApplicationError("Set up an authenticator app first.")
        codes = _issue_backup_codes(user)
        audit.record(actor=user, action="2fa.backup_codes_regenerated", target=user)
    return codes


def _clean_code(code: str) -> str:
    return "".join((code or "").split())[:32]


def _throttled(info: dict | None) -> CodeThrottled:
    until: datetime | None = (info or {}).get("locked_until")
    wait = max(1, int((until - timezone.now()).total_seconds()) + 1) if until else 1
    return CodeThrottled(
        f"Too many wrong codes. Wait {wait} second{'s' if wait != 1 else ''} and try again.",
        extra={"retry_after": wait},
    )


def second_factor_verify(*, user: User, code: str, purpose: str = "sign_in") -> Device:
    """Check a TOTP or backup code; returns the device that matched.

    Wrong codes are throttled per device with exponential back-off (1, 2, 4 …
    seconds); while *any* of the user's devices is throttled every attempt is
    refused, so alternating between TOTP and backup codes gains nothing.
    """
    code = _clean_code(code)
    if not code:
        raise ApplicationError("Enter the 6-digit code from your app or a backup code.")
    with transaction.atomic():
        totp = (
            EncryptedTOTPDevice.objects.select_for_update()
            .filter(user=user, confirmed=True)
            .order_by("-id")
            .first()
        )
        backup = BackupCodeDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
        if totp is None:
            raise ApplicationError("Set up an authenticator app first.")
        for candidate in (totp, backup):
            if candidate is None:
                continue
            allowed, info = candidate.verify_is_allowed()
            if not allowed:
                raise _throttled(info)
        is_totp_shaped = code.isdigit() and len(code) in (6, 8)
        device: Device | None = totp if is_totp_shaped else backup
        matched = device is not None and device.verify_token(code)
        if not matched:
            audit.record(
                actor=user,
                action="2fa.code_wrong",
                target=user,
                details={"purpose": purpose, "kind": "totp" if is_totp_shaped else "backup"},
            )
    # The failure audit above must survive, so raise outside the atomic block.
    if not matched:
        raise ApplicationError("That code is not right.", code="wrong_code")
    assert device is not None
    with transaction.atomic():
        details: dict[str, object] = {
            "purpose": purpose,
            "method": "totp" if device is totp else "backup_code",
        }
        if device is backup:
            details["backup_codes_left"] = backup.remaining() if backup else 0
        audit.record(actor=user, action="2fa.verified", target=user, details=details)
    return device


def user_sign_out_everywhere(*, user: User) -> None:
    """Invalidate every session of this user, in every browser."""
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        locked.session_epoch += 1
        locked.save(update_fields=["session_epoch"])
        audit.record(actor=locked, action="auth.signed_out_everywhere", target=locked)
    user.session_epoch = locked.session_epoch
