"""Merchant API state: idempotency keys.

An ``Idempotency-Key`` sent with a POST is remembered for 24 hours per merchant
and per caller (API key or user): the first request's response is stored and
replayed for a retry with the same body. The database enforces one row per
(merchant, caller, key), so two concurrent requests can never both run.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class IdempotencyRecord(models.Model):
    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETE = "complete", "Complete"

    merchant = models.ForeignKey("accounts.Merchant", on_delete=models.CASCADE, related_name="+")
    # "key:<api key public id>" or "user:<user public id>".
    principal = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    # SHA-256 of the method, path and canonical body: a retry must match it exactly.
    fingerprint = models.CharField(max_length=64)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.IN_PROGRESS)
    # An id reserved for the object this request creates (refunds), so a retry after a crash
    # reuses it and the gateway's own idempotency on that id prevents a second refund.
    resource_id = models.CharField(max_length=40, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    locked_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "principal", "key"], name="uniq_idempotency_key")
        ]
        indexes = [models.Index(fields=["created_at"], name="idem_created")]

    def __str__(self) -> str:
        return f"{self.principal}:{self.key[:40]}"
