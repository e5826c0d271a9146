from __future__ import annotations

from django.db import models


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
