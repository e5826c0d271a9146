"""A merchant's fraud rules: checked when checkout opens and again on the gateway's result.

``parameters`` is JSON validated per kind by :func:`payments.fraud_rules.validate_parameters`
(the only way rules are written is through the services there, which audit every change).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from security.ids import public_id_default


class FraudRule(models.Model):
    class Kind(models.TextChoices):
        MAX_AMOUNT = "max_amount", "Maximum amount"
        VELOCITY = "velocity", "Velocity"
        COUNTRY_MISMATCH = "country_mismatch", "IP country differs from card country"
        BLOCK_EMAIL = "block_email", "Blocked customer emails"
        BLOCK_IP = "block_ip", "Blocked IP ranges"
        BLOCK_CARD = "block_card", "Blocked cards"
        BLOCK_BIN = "block_bin", "Blocked BINs"
        RISK_LEVEL = "risk_level", "Gateway risk level"

    class Action(models.TextChoices):
        REVIEW = "review", "Hold for review"
        BLOCK = "block", "Block"

    public_id = models.CharField(max_length=40, unique=True, default=public_id_default("frr"), editable=False)
    merchant = models.ForeignKey("accounts.Merchant", on_delete=models.CASCADE, related_name="fraud_rules")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    parameters = models.JSONField(default=dict, blank=True)
    action = models.CharField(max_length=6, choices=Action.choices, default=Action.REVIEW)
    enabled = models.BooleanField(default=True)
    label = models.CharField(max_length=120)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "label", "id"]
        indexes = [models.Index(fields=["merchant", "enabled"], name="frr_merchant_enabled")]

    def __str__(self) -> str:
        return f"{self.label} ({self.kind})"
