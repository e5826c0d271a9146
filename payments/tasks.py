from __future__ import annotations

from celery import shared_task

from payments import key_hygiene


@shared_task(name="payments.remind_gateway_key_rotation", acks_late=True, ignore_result=True)
def remind_gateway_key_rotation() -> int:
    """Daily: record gateway secret sightings and email admins about keys older than 90 days."""
    return key_hygiene.gateway_secrets_remind()
