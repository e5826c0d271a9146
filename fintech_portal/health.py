"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

BROKER_TIMEOUT_SECONDS = 2.0


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving requests."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return f"database unreachable: {exc.__class__.__name__}"
    return None


def _check_broker() -> str | None:
    from fintech_portal.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001
        return f"broker unreachable: {exc.__class__.__name__}"
    return None


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready when the database and the Celery broker both answer."""
    problems = {
        name: reason
        for name, reason in (("database", _check_database()), ("broker", _check_broker()))
        if reason
    }
    if problems:
        return JsonResponse({"status": "unavailable", "reasons": problems}, status=503)
    return JsonResponse(
        {
            "status": "ok",
            "checks": {"database": "ok", "broker": "ok"},
            # Informational: when beat and a worker last ran the heartbeat task.
            "scheduler_last_heartbeat": _last_heartbeat(),
        }
    )


def _last_heartbeat() -> str | None:
    from django.core.cache import cache

    from fintech_portal.tasks import HEARTBEAT_CACHE_KEY

    try:
        return cache.get(HEARTBEAT_CACHE_KEY)
    except Exception:  # noqa: BLE001 - a cache outage must not fail readiness
        return None
