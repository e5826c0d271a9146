"""Reads for people and teams, always scoped to a merchant or a user."""

from __future__ import annotations

from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from accounts import merchant_roles
from accounts.models import ApiKey, Invitation, Membership, Merchant, Role, User


def memberships_for_user(user: User) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("merchant").order_by("created_at")


def membership_for(user: User, merchant_public_id: str | None) -> Membership | None:
    """The user's membership at the chosen merchant, or their first one."""
    memberships = memberships_for_user(user)
    if merchant_public_id:
        chosen = memberships.filter(merchant__public_id=merchant_public_id).first()
        if chosen is not None:
            return chosen
    return memberships.first()


def member_role(user: User, merchant_id: int) -> str | None:
    """The user's current role on the merchant's team, or None when they are not on it."""
    return (
        Membership.objects.filter(user=user, merchant_id=merchant_id).values_list("role", flat=True).first()
    )


def member_can(user: User, merchant_id: int, action: str) -> bool:
    """Whether ``user``'s current role on the merchant's team allows ``action`` (the role table)."""
    return merchant_roles.role_can(member_role(user, merchant_id), action)


def member_role_in(user: User, merchant_id: int, roles: frozenset[str]) -> bool:
    """Whether ``user`` is on the merchant's team in one of ``roles`` (roles from the role table)."""
    return Membership.objects.filter(user=user, merchant_id=merchant_id, role__in=roles).exists()


def team_members(merchant: Merchant) -> QuerySet[Membership]:
    return Membership.objects.filter(merchant=merchant).select_related("user").order_by("user__email")


def team_member(merchant: Merchant, membership_id: int) -> Membership | None:
    return team_members(merchant).filter(pk=membership_id).first()


def pending_invitations(merchant: Merchant) -> QuerySet[Invitation]:
    return (
        Invitation.objects.filter(
            merchant=merchant,
            accepted_at__isnull=True,
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
        )
        .select_related("invited_by")
        .order_by("-created_at")
    )


def invitation_for_merchant(merchant: Merchant, public_id: str) -> Invitation | None:
    return Invitation.objects.filter(merchant=merchant, public_id=public_id).first()


def owner_count(merchant: Merchant) -> int:
    return Membership.objects.filter(merchant=merchant, role=Role.OWNER).count()


def api_keys_for(merchant: Merchant) -> QuerySet[ApiKey]:
    """The merchant's API keys, newest first, with who made them, their current role
    (``creator_role``: a key's power is its scope within it) and what replaced them."""
    return (
        ApiKey.objects.filter(merchant=merchant)
        .select_related("created_by", "rotated_to")
        .annotate(
            creator_role=Subquery(
                Membership.objects.filter(
                    user_id=OuterRef("created_by_id"), merchant_id=OuterRef("merchant_id")
                ).values("role")[:1]
            )
        )
        .order_by("-created_at")
    )


def api_key_for(merchant: Merchant, public_id: str) -> ApiKey | None:
    return api_keys_for(merchant).filter(public_id=public_id).first()
