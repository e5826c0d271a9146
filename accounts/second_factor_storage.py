"""Moving second factors written in clear (or with a fast unkeyed hash) to their protected storage.

Called by the data migration, and by tests on rows written the old way. Both
functions take an app registry (the migration's historical one, or
``django.apps.apps``) and a database alias, and are safe to run again: what is
already converted is left alone.

* TOTP: each django-otp ``TOTPDevice`` (secret in clear) becomes an
  :class:`~accounts.models.EncryptedTOTPDevice` with the same secret, counters
  (``last_t``, ``drift``), throttling state and timestamps; the clear row is
  deleted. Signed-in sessions verified with an old device must enter a code again.
* Backup codes: the stored unkeyed SHA-256 becomes ``HMAC(key, sha256)``
  (:func:`accounts.models.backup_code_digest`), so every existing code keeps
  working and no code's plain digest remains.
"""

from __future__ import annotations

from typing import Any

from accounts.models import backup_code_digest

_COPIED = (
    "name",
    "confirmed",
    "step",
    "t0",
    "digits",
    "tolerance",
    "drift",
    "last_t",
    "throttling_failure_timestamp",
    "throttling_failure_count",
    "created_at",
    "last_used_at",
)


def move_totp_devices(apps: Any, using: str) -> int:
    """Encrypt every clear TOTP secret into the project's device model; returns devices moved."""
    clear_model = apps.get_model("otp_totp", "TOTPDevice")
    encrypted_model = apps.get_model("accounts", "EncryptedTOTPDevice")
    moved = 0
    for old in clear_model.objects.using(using).select_related("user").order_by("pk").iterator():
        device = encrypted_model(user=old.user, key=old.key, **{f: getattr(old, f) for f in _COPIED})
        device.save(using=using)
        old.delete()
        moved += 1
    return moved


def keyed_backup_code_hashes(apps: Any, using: str) -> int:
    """Wrap every unkeyed backup-code digest (``keyed=False``) in the keyed HMAC; returns codes converted."""
    code_model = apps.get_model("accounts", "BackupCode")
    converted = 0
    for code in code_model.objects.using(using).filter(keyed=False).order_by("pk").iterator():
        code.code_hash = backup_code_digest(code.code_hash)
        code.keyed = True
        code.save(using=using, update_fields=["code_hash", "keyed"])
        converted += 1
    return converted


def move_totp_devices_back(apps: Any, using: str) -> int:
    """The reverse of :func:`move_totp_devices` (a migration rollback): secrets back in clear."""
    clear_model = apps.get_model("otp_totp", "TOTPDevice")
    encrypted_model = apps.get_model("accounts", "EncryptedTOTPDevice")
    moved = 0
    for device in encrypted_model.objects.using(using).select_related("user").order_by("pk").iterator():
        clear_model.objects.using(using).create(
            user=device.user, key=device.key, **{f: getattr(device, f) for f in _COPIED}
        )
        device.delete()
        moved += 1
    return moved
