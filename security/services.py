"""Writes of the security app that other apps call (shredding lives in :mod:`security.crypto`)."""

from __future__ import annotations

from typing import Any

from django.db import models, transaction

from security import audit
from security.errors import ApplicationError, PermissionDeniedError
from security.fields import EncryptedMixin

REVEAL_PERMISSION = "security.reveal_pii"
MIN_REASON_LENGTH = 10


def pii_reveal(*, actor: Any, instance: models.Model, field: str, reason: str, merchant: Any = None) -> Any:
    """Return the full value of an encrypted field, once the actor may see it and said why.

    Needs ``security.reveal_pii``; writes a ``pii.viewed`` audit event naming
    who, which record and field, and the reason. Nothing is returned (and
    nothing recorded as viewed) when a check fails.
    """
    if not getattr(actor, "is_authenticated", False) or not actor.has_perm(REVEAL_PERMISSION):
        raise PermissionDeniedError("Your role does not allow revealing personal data.")
    reason = (reason or "").strip()
    if len(reason) < MIN_REASON_LENGTH:
        raise ApplicationError(
            f"Say why you need to see the full value (at least {MIN_REASON_LENGTH} characters); "
            "it is recorded in the audit log."
        )
    model_field = instance._meta.get_field(field)
    if not isinstance(model_field, EncryptedMixin):
        raise ApplicationError(f"{field} is not a protected field.")
    with transaction.atomic():
        value = getattr(instance, field)
        audit.record(
            actor=actor,
            action="pii.viewed",
            target=instance,
            merchant=merchant,
            details={"field": field, "reason": reason[:300]},
        )
    return value
