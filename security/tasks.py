"""Celery tasks of the security app."""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from security.rotation import rotate_keys

# Re-wrapping every data key calls the KMS (network) batch after batch: generous limits, and a
# rotation that reaches the soft one carries on from its cursor in a fresh task.
ROTATION_SOFT_TIME_LIMIT, ROTATION_TIME_LIMIT = 30 * 60, 31 * 60


@shared_task(
    name="security.rotate_data_keys",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=ROTATION_SOFT_TIME_LIMIT,
    time_limit=ROTATION_TIME_LIMIT,
)
def rotate_data_keys(actor_label: str = "key rotation task") -> str:
    """Run (or resume) the rotation to the active KEK. Safe to run twice: it resumes from its cursor."""
    try:
        run = rotate_keys(actor=actor_label)
    except SoftTimeLimitExceeded:
        # The batch in hand rolled back; the cursor keeps every batch before it.
        rotate_data_keys.apply_async(args=[actor_label], countdown=1)
        return "continuing"
    return run.status
