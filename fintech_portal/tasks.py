"""Platform-level tasks (no business logic)."""

from celery import shared_task


@shared_task(name="fintech_portal.ping", acks_late=True)
def ping(token: str) -> str:
    """Echo a token back: proves a worker consumed from the broker and replied."""
    return f"pong:{token}"
