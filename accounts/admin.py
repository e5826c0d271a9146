from __future__ import annotations

import contextlib

from django.contrib import admin
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Invitation, Membership, Merchant, MerchantStatusChange, User

# django-otp's own device admins show and accept secrets in clear (the TOTP one even draws the
# QR code of any user's secret). Second factors are enrolled by their owner only, encrypted.
for _clear_device in (TOTPDevice, StaticDevice):
    with contextlib.suppress(NotRegistered):
        admin.site.unregister(_clear_device)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "full_name", "is_active", "is_staff", "is_superuser", "date_joined"]
    list_filter = ["is_active", "is_staff", "is_superuser", "groups"]
    search_fields = ["email", "full_name", "public_id"]
    readonly_fields = ["public_id", "last_login", "date_joined", "session_epoch"]
    fieldsets = (
        (None, {"fields": ("public_id", "email", "password")}),
        ("Profile", {"fields": ("full_name",)}),
        ("Access", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("History", {"fields": ("last_login", "date_joined", "session_epoch")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ["display_name", "legal_name", "country", "data_region", "status", "created_at"]
    list_filter = ["status", "data_region", "country"]
    search_fields = ["display_name", "legal_name", "public_id"]
    # Status changes go through the service (history and audit), never a raw edit.
    readonly_fields = ["public_id", "status", "created_at", "updated_at"]
    inlines = [MembershipInline]


@admin.register(MerchantStatusChange)
class MerchantStatusChangeAdmin(admin.ModelAdmin):
    list_display = ["merchant", "from_status", "to_status", "changed_by", "changed_at"]
    list_filter = ["to_status"]

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[override]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[override]
        return False

    def has_add_permission(self, request) -> bool:  # type: ignore[override]
        return False


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["public_id", "merchant", "role", "created_at", "expires_at", "accepted_at", "revoked_at"]
    list_filter = ["role"]
    readonly_fields = [f.name for f in Invitation._meta.fields]

    def has_add_permission(self, request) -> bool:  # type: ignore[override]
        return False
