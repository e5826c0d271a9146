"""Celery tasks of the security app."""

from __future__ import annotations

from celery import shared_task

from security.rotation import rotate_keys


@shared_task(name="security.rotate_data_keys", acks_late=True, ignore_result=True)
def rotate_data_keys(actor_label: str = "key rotation task") -> str:
    """Run (or resume) the rotation to the active KEK. Safe to run twice: it resumes from its cursor."""
    run = rotate_keys(actor=actor_label)
    return run.status
