"""Payments in the Django admin: what platform admins look at, read-only.

Stored gateway events are listed with their status so an admin can filter on
``Mismatched (held)``: signed events that named a payment they do not belong to
(another connected or merchant account, the other mode, a gateway object that is not
the payment's, another amount or currency). Nothing here changes a status: those move
only through ``payments.services``. The event payload itself (customers' details,
encrypted at rest) is not shown.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from payments.models import WebhookEvent


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = [
        "public_id",
        "gateway",
        "type",
        "status",
        "merchant",
        "object_id",
        "received_at",
        "reason",
    ]
    list_filter = ["status", "gateway", "type"]
    search_fields = ["public_id", "event_id", "object_id", "last_error"]
    list_select_related = ["merchant"]
    date_hierarchy = "received_at"
    fields = [
        "public_id",
        "gateway",
        "event_id",
        "type",
        "object_id",
        "status",
        "merchant",
        "created_at_gateway",
        "received_at",
        "applied_at",
        "attempts",
        "last_error",
    ]
    readonly_fields = fields

    @admin.display(description="Reason / last error", ordering="last_error")
    def reason(self, obj: WebhookEvent) -> str:
        return obj.last_error

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WebhookEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: WebhookEvent | None = None) -> bool:
        return False
