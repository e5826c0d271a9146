"""Gateway key hygiene: notice how old each platform gateway secret is, and nag until it changes.

Secrets are identified by a keyed fingerprint (HMAC-SHA256 under SECRET_KEY's
derivation), so the database never holds anything that could be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from payments.gateways.stripe import split_secrets
from payments.models import GatewaySecretSighting
from security import audit

ROTATE_AFTER = timedelta(days=90)
REMIND_EVERY = timedelta(hours=23)

# (gateway, setting name). Webhook secrets may list several (rotation); each is tracked.
TRACKED_SETTINGS: tuple[tuple[str, str], ...] = (
    ("stripe", "STRIPE_SECRET_KEY"),
    ("stripe", "STRIPE_WEBHOOK_SECRET"),
    ("braintree", "BRAINTREE_PRIVATE_KEY"),
)


@dataclass(frozen=True)
class ConfiguredSecret:
    gateway: str
    label: str
    fingerprint: str


def fingerprint(secret: str) -> str:
    key = hashlib.sha256(f"gateway-key-fingerprint:{settings.SECRET_KEY}".encode()).digest()
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


def configured_secrets() -> list[ConfiguredSecret]:
    found: list[ConfiguredSecret] = []
    for gateway, name in TRACKED_SETTINGS:
        for value in split_secrets(getattr(settings, name, "") or ""):
            found.append(ConfiguredSecret(gateway, name, fingerprint(value)))
    return found


def gateway_secrets_record_sightings(*, now: datetime | None = None) -> list[GatewaySecretSighting]:
    """Upsert a sighting for every configured secret; retire those no longer configured."""
    now = now or timezone.now()
    current = configured_secrets()
    seen: list[GatewaySecretSighting] = []
    with transaction.atomic():
        for secret in current:
            sighting, created = GatewaySecretSighting.objects.select_for_update().get_or_create(
                fingerprint=secret.fingerprint,
                defaults={
                    "gateway": secret.gateway,
                    "label": secret.label,
                    "first_seen_at": now,
                    "last_seen_at": now,
                },
            )
            if created:
                audit.record(
                    actor=None,
                    action="gateway_key.first_seen",
                    target=("gateway_key", secret.fingerprint[:16]),
                    details={"gateway": secret.gateway, "setting": secret.label},
                )
            else:
                sighting.last_seen_at = now
                sighting.retired_at = None
                sighting.save(update_fields=["last_seen_at", "retired_at"])
            seen.append(sighting)
        fingerprints = {s.fingerprint for s in current}
        retired = GatewaySecretSighting.objects.filter(retired_at__isnull=True).exclude(
            fingerprint__in=fingerprints
        )
        for sighting in retired.select_for_update():
            sighting.retired_at = now
            sighting.save(update_fields=["retired_at"])
            audit.record(
                actor=None,
                action="gateway_key.retired",
                target=("gateway_key", sighting.fingerprint[:16]),
                details={"gateway": sighting.gateway, "setting": sighting.label},
            )
    return seen


def stale_secrets(*, now: datetime | None = None) -> list[GatewaySecretSighting]:
    """Configured secrets older than 90 days."""
    now = now or timezone.now()
    return list(
        GatewaySecretSighting.objects.filter(
            retired_at__isnull=True, first_seen_at__lte=now - ROTATE_AFTER
        ).order_by("first_seen_at")
    )


def describe(sighting: GatewaySecretSighting, now: datetime) -> str:
    age = (now - sighting.first_seen_at).days
    return f"{sighting.label} ({sighting.gateway}) has been in use for {age} days."


def gateway_secrets_remind(*, now: datetime | None = None) -> int:
    """Email the platform admins about stale secrets, at most once a day. Returns emails sent."""
    now = now or timezone.now()
    gateway_secrets_record_sightings(now=now)
    with transaction.atomic():
        due = [
            s
            for s in GatewaySecretSighting.objects.select_for_update().filter(
                pk__in=[s.pk for s in stale_secrets(now=now)]
            )
            if s.last_reminder_at is None or now - s.last_reminder_at >= REMIND_EVERY
        ]
        if not due:
            return 0
        admins = list(
            get_user_model().objects.filter(is_superuser=True, is_active=True).values_list("email", flat=True)
        )
        if not admins:
            return 0
        lines = [describe(s, now) for s in due]
        body = (
            "These payment gateway secrets are older than 90 days and should be rotated:\n\n"
            + "\n".join(f"- {line}" for line in lines)
            + "\n\nIssue a new key in the gateway's dashboard, update the environment or secret file, "
            "restart the app, then revoke the old key. This reminder repeats daily until the key changes.\n"
        )
        for sighting in due:
            sighting.last_reminder_at = now
            sighting.save(update_fields=["last_reminder_at"])
        audit.record(actor=None, action="gateway_key.rotation_reminder_sent", details={"keys": len(due)})
        transaction.on_commit(
            lambda: send_mail(
                subject="[fintech_portal] Rotate payment gateway keys",
                message=body,
                from_email=None,
                recipient_list=admins,
            )
        )
    return len(admins)


def admin_notices():  # -> list[accounts.notices.Notice]
    from accounts.notices import Notice

    now = timezone.now()
    try:
        stale = stale_secrets(now=now)
    except Exception:  # noqa: BLE001 - a notice must never break the admin
        return []
    return [
        Notice(
            level="warning",
            title="Rotate gateway key:",
            body=describe(s, now) + " Rotate it in the gateway and update the environment.",
        )
        for s in stale
    ]
