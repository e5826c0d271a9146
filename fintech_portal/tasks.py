"""Platform-level tasks (no business logic)."""

from __future__ import annotations

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

HEARTBEAT_CACHE_KEY = "beat:last-heartbeat"


@shared_task(name="fintech_portal.ping", acks_late=True)
def ping(token: str) -> str:
    """Echo a token back: proves a worker consumed from the broker and replied."""
    return f"pong:{token}"


@shared_task(name="fintech_portal.beat_heartbeat", acks_late=True, ignore_result=True)
def beat_heartbeat() -> str:
    """Fired by beat: records that the scheduler and a worker are both alive."""
    now = timezone.now().isoformat()
    cache.set(HEARTBEAT_CACHE_KEY, now, timeout=None)
    return now


@shared_task(name="fintech_portal.clear_expired_sessions", acks_late=True, ignore_result=True)
def clear_expired_sessions() -> None:
    """Delete expired sessions (idempotent)."""
    from django.contrib.sessions.models import Session

    Session.objects.filter(expire_date__lt=timezone.now()).delete()
