"""Key rotation: re-wrap every data key under the newly active KEK, in batches.

Values are never re-encrypted: each data key is unwrapped with the KEK that
wraps it now and wrapped again with the active one. Each batch commits the
re-wrapped keys together with the run's cursor and counts (a
:class:`~security.models.KeyRotation` row), so a crashed run resumes where it
stopped, and readers never wait: until the run completes, the old KEKs stay in
the keyring and keep unwrapping the keys not yet moved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from security import audit
from security.crypto import Subject, wrap_context
from security.errors import ApplicationError
from security.keyring import KeyringError, get_keyring
from security.models import DataKey, KeyRotation

OPEN = (KeyRotation.Status.RUNNING, KeyRotation.Status.FAILED)


def _pending(target: str) -> Any:
    return DataKey.objects.filter(shredded_at__isnull=True).exclude(kek_id=target)


def rotation_start(*, actor: Any = None) -> KeyRotation:
    """Resume the open run for the active KEK, or start one (superseding runs for older KEKs)."""
    target = get_keyring().active_id
    with transaction.atomic():
        for open_run in (
            KeyRotation.objects.select_for_update().filter(status__in=OPEN).order_by("-started_at")
        ):
            if open_run.target_kek_id == target:
                return open_run
            open_run.status = KeyRotation.Status.SUPERSEDED
            open_run.finished_at = timezone.now()
            open_run.save(update_fields=["status", "finished_at"])
        total = _pending(target).count()
        run = KeyRotation.objects.create(
            target_kek_id=target,
            total=total,
            started_by=audit._actor_fields(actor)[1],
        )
        audit.record(
            actor=actor,
            action="crypto.rotation_started",
            target=("security.keyrotation", run.public_id),
            details={"target_kek": target, "data_keys": total},
        )
    return run


def rotation_step(run: KeyRotation, *, batch_size: int = 500) -> int:
    """Re-wrap the next batch; returns how many keys moved (0: nothing left after the cursor)."""
    keyring = get_keyring()
    with transaction.atomic():
        locked = KeyRotation.objects.select_for_update().get(pk=run.pk)
        if locked.target_kek_id != keyring.active_id:
            raise ApplicationError(
                f"The active KEK is now {keyring.active_id!r}, not {locked.target_kek_id!r}: "
                "run rotate_keys again to start a rotation to it."
            )
        batch = list(
            _pending(locked.target_kek_id)
            .select_for_update()
            .filter(pk__gt=locked.cursor)
            .order_by("pk")[:batch_size]
        )
        now = timezone.now()
        for key in batch:
            context = wrap_context(key.key_id, Subject(key.subject_kind, key.subject_id))
            raw = keyring.unwrap(key.kek_id, bytes(key.wrapped_key), context)
            key.kek_id, key.wrapped_key = keyring.wrap(raw, context)
            key.rotated_at = now
            key.save(update_fields=["kek_id", "wrapped_key", "rotated_at"])
        if batch:
            locked.cursor = batch[-1].pk
            locked.done += len(batch)
            locked.total = max(locked.total, locked.done)
            locked.batches += 1
        locked.status = KeyRotation.Status.RUNNING
        locked.last_error = ""
        locked.updated_at = now
        locked.save(
            update_fields=["cursor", "done", "total", "batches", "status", "last_error", "updated_at"]
        )
    run.refresh_from_db()
    return len(batch)


def rotation_fail(run: KeyRotation, error: str) -> None:
    KeyRotation.objects.filter(pk=run.pk).update(
        status=KeyRotation.Status.FAILED, last_error=error[:500], updated_at=timezone.now()
    )
    run.refresh_from_db()


def rotation_finish(run: KeyRotation, *, actor: Any = None) -> KeyRotation:
    with transaction.atomic():
        locked = KeyRotation.objects.select_for_update().get(pk=run.pk)
        if locked.status == KeyRotation.Status.COMPLETED:
            return locked
        locked.status = KeyRotation.Status.COMPLETED
        locked.finished_at = timezone.now()
        locked.updated_at = locked.finished_at
        locked.save(update_fields=["status", "finished_at", "updated_at"])
        in_use = sorted(
            set(DataKey.objects.filter(shredded_at__isnull=True).values_list("kek_id", flat=True))
        )
        audit.record(
            actor=actor,
            action="crypto.rotation_completed",
            target=("security.keyrotation", locked.public_id),
            details={
                "target_kek": locked.target_kek_id,
                "data_keys_rewrapped": locked.done,
                "batches": locked.batches,
                "keks_in_use": in_use,
            },
        )
    run.refresh_from_db()
    return run


def rotate_keys(
    *,
    actor: Any = None,
    batch_size: int = 500,
    max_batches: int | None = None,
    progress: Callable[[KeyRotation], None] | None = None,
) -> KeyRotation:
    """Run (or resume) a rotation to the active KEK; stops early after ``max_batches``."""
    if batch_size < 1:
        raise ApplicationError("The batch size must be at least 1.")
    run = rotation_start(actor=actor)
    batches = 0
    rewound = False
    while max_batches is None or batches < max_batches:
        try:
            moved = rotation_step(run, batch_size=batch_size)
        except KeyringError as exc:
            rotation_fail(run, str(exc))
            raise ApplicationError(
                f"Rotation stopped after {run.done} of {run.total} data keys: {exc} "
                "Fix the key and run rotate_keys again: it resumes from here."
            ) from exc
        if moved:
            batches += 1
            if progress is not None:
                progress(run)
            continue
        # Keys created under an old KEK behind the cursor (by a process still on the old
        # configuration during a rolling restart): sweep once more from the start.
        if not rewound and _pending(run.target_kek_id).exists():
            KeyRotation.objects.filter(pk=run.pk).update(cursor=0)
            run.refresh_from_db()
            rewound = True
            continue
        return rotation_finish(run, actor=actor)
    return run
