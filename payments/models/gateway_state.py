from __future__ import annotations

from django.db import models


class SimulatedIntent(models.Model):
    """The simulated gateway's own state: one Stripe-shaped PaymentIntent per row.

    This is the simulated gateway's private store (what Stripe's database is to
    Stripe), kept in the database so web and worker processes see the same
    intent. Nothing outside :mod:`payments.gateways.simulated` reads or writes it.
    ``merchant_account`` scopes an intent the way the ``Stripe-Account`` header
    scopes a connected account's objects.
    """

    intent_id = models.CharField(max_length=64, unique=True)
    idempotency_key = models.CharField(max_length=255, unique=True)
    merchant_account = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=32)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    # Bumped on every change; simulated event ids derive from it so re-sending an
    # event for the same state reuses the same id.
    version = models.PositiveIntegerField(default=0)
    # {"intent": {...}, "charge": {...} | null, "refunds": [...], "keys": {...}}
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["merchant_account", "status"])]

    def __str__(self) -> str:
        return f"{self.intent_id} ({self.status})"


class GatewaySecretSighting(models.Model):
    """When the platform first (and last) saw a gateway secret, by fingerprint only.

    The secret itself lives in the environment or a secret file, never here.
    """

    gateway = models.CharField(max_length=20)
    label = models.CharField(max_length=60, help_text="Which setting, e.g. STRIPE_SECRET_KEY")
    fingerprint = models.CharField(max_length=64, unique=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    retired_at = models.DateTimeField(null=True, blank=True)
    last_reminder_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["gateway", "label", "-first_seen_at"]

    def __str__(self) -> str:
        return f"{self.label} {self.fingerprint[:8]}"
