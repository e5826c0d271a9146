"""Outgoing merchant webhooks: endpoints, deliveries and the log of every attempt.

A payment or refund event becomes one delivery per subscribed endpoint, written
in the same transaction as the change and sent after commit by a Celery task,
retried with exponential backoff for up to three days.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from security.fields import EncryptedTextField, EncryptionSubject
from security.ids import public_id_default

# Every event type an endpoint can subscribe to.
PAYMENT_EVENT_TYPES = (
    "payment.requires_action",
    "payment.processing",
    "payment.requires_capture",
    "payment.succeeded",
    "payment.failed",
    "payment.canceled",
)
REFUND_EVENT_TYPES = ("refund.created", "refund.succeeded", "refund.failed", "refund.canceled")
EVENT_TYPES = PAYMENT_EVENT_TYPES + REFUND_EVENT_TYPES


class WebhookEndpoint(models.Model):
    """An HTTPS URL of the merchant's that receives signed events."""

    public_id = models.CharField(max_length=40, unique=True, default=public_id_default("we"), editable=False)
    merchant = models.ForeignKey(
        "accounts.Merchant", on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.CharField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    # Event types this endpoint receives; empty means every type.
    event_types = models.JSONField(default=list, blank=True)
    # Shown once at creation; encrypted under the merchant's key (crypto-shredded with it).
    secret = EncryptedTextField(subject=EncryptionSubject("merchant", "merchant__public_id"))
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    disabled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["merchant", "enabled"], name="we_merchant_enabled")]

    def __str__(self) -> str:
        return self.public_id

    def receives(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class WebhookDelivery(models.Model):
    """One event for one endpoint: its exact body, status and retry schedule."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Delivered"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    public_id = models.CharField(max_length=40, unique=True, default=public_id_default("dlv"), editable=False)
    merchant = models.ForeignKey("accounts.Merchant", on_delete=models.CASCADE, related_name="+")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.CharField(max_length=40)
    event_type = models.CharField(max_length=40)
    # The JSON exactly as sent and signed (public fields only; emails masked).
    body = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Set while a worker is attempting it, so no other worker sends it at the same time.
    lease_until = models.DateTimeField(null=True, blank=True)
    # Retries stop three days after this (the creation, or the last manual resend).
    window_started_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    manual_pending = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_id"], name="uniq_delivery_endpoint_event")
        ]
        indexes = [
            models.Index(fields=["endpoint", "-created_at", "-id"], name="dlv_endpoint_created"),
            models.Index(fields=["status", "next_attempt_at"], name="dlv_status_due"),
            # The per-merchant concurrency cap: deliveries being attempted, and those waiting.
            models.Index(
                fields=["merchant", "lease_until"],
                condition=models.Q(lease_until__isnull=False),
                name="dlv_merchant_in_flight",
            ),
            models.Index(
                fields=["merchant", "next_attempt_at"],
                condition=models.Q(status="pending"),
                name="dlv_merchant_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint_id}"


class WebhookDeliveryAttempt(models.Model):
    """Append-only log: every HTTP attempt of a delivery, with what came back."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    manual = models.BooleanField(default=False)
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_snippet = models.CharField(max_length=500, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        indexes = [models.Index(fields=["delivery", "number"], name="dla_delivery_number")]

    def __str__(self) -> str:
        return f"{self.delivery_id} #{self.number}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300 and not self.error
