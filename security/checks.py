"""System checks: keys that cannot read this database's data stop ``migrate`` and ``check``."""

from __future__ import annotations

from typing import Any

from django.core import checks


def dev_keyring_warning(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from django.conf import settings

    from security.keyring import get_keyring

    messages: list[checks.CheckMessage] = []
    if get_keyring().dev_only:
        messages.append(
            checks.Warning(
                "DEVELOPMENT-ONLY KEYRING: FIELD_ENCRYPTION_KEYS is not set, so encrypted fields use a key "
                "derived from a phrase in the source code. Anything encrypted now is readable by anyone.",
                hint="Set FIELD_ENCRYPTION_KEYS before storing real personal data.",
                id="security.W001",
            )
        )
    if settings.DEBUG and not getattr(settings, "BLIND_INDEX_KEY", ""):
        messages.append(
            checks.Warning(
                "DEVELOPMENT-ONLY BLIND INDEX KEY: BLIND_INDEX_KEY is not set.",
                id="security.W002",
            )
        )
    if settings.DEBUG and not getattr(settings, "AUDIT_CHAIN_KEY", ""):
        messages.append(
            checks.Warning(
                "DEVELOPMENT-ONLY AUDIT CHAIN KEY: AUDIT_CHAIN_KEY is not set, so the audit log is "
                "HMAC-ed with a key from the source code.",
                id="security.W003",
            )
        )
    return messages


def data_keys_readable(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Every KEK that wraps a data key is configured and is the right key."""
    if not databases:
        return []
    from django.db import DatabaseError, connection

    from security.crypto import Subject, wrap_context
    from security.keyring import KeyringError, get_keyring
    from security.models import DataKey

    keyring = get_keyring()
    errors: list[checks.CheckMessage] = []
    try:
        if DataKey._meta.db_table not in connection.introspection.table_names():
            return []
        kek_ids = set(
            DataKey.objects.filter(shredded_at__isnull=True).values_list("kek_id", flat=True).distinct()
        )
        for kek_id in sorted(kek_ids):
            if not keyring.knows(kek_id):
                errors.append(
                    checks.Error(
                        f"Data keys are wrapped by KEK {kek_id!r}, which is not configured: their values "
                        "cannot be read.",
                        hint="Add it back to FIELD_ENCRYPTION_KEYS (or FIELD_ENCRYPTION_KMS_KEYS); remove "
                        "an old KEK only after `manage.py rotate_keys` has completed.",
                        id="security.E001",
                    )
                )
                continue
            sample = DataKey.objects.filter(kek_id=kek_id, shredded_at__isnull=True).order_by("id").first()
            if sample is None:
                continue
            try:
                keyring.unwrap(
                    kek_id,
                    bytes(sample.wrapped_key),
                    wrap_context(sample.key_id, Subject(sample.subject_kind, sample.subject_id)),
                )
            except KeyringError as exc:
                errors.append(
                    checks.Error(
                        f"The configured KEK {kek_id!r} is the wrong key for this database: {exc}",
                        id="security.E002",
                    )
                )
    except DatabaseError:
        return []
    return errors


def register() -> None:
    checks.register(dev_keyring_warning, checks.Tags.security)
    checks.register(data_keys_readable, checks.Tags.database)


def settings_changed(setting: str, **kwargs: Any) -> None:
    """Tests override key settings: rebuild what was derived from them."""
    if setting in ("FIELD_ENCRYPTION_KEYS", "FIELD_ENCRYPTION_KMS_KEYS", "DEBUG"):
        from security import crypto, keyring

        keyring.set_keyring(None)
        crypto.clear_key_cache()
    if setting in ("BLIND_INDEX_KEY", "DEBUG"):
        from security import blind_index

        blind_index.reset_key()
    if setting in ("AUDIT_CHAIN_KEY", "AUDIT_CHAIN_PREVIOUS_KEYS", "DEBUG"):
        from security import audit

        audit.reset_chain_keys()
