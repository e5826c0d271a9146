"""With no Redis, `make run`'s embedded broker still carries periodic jobs from beat to a worker."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time

import pytest

from tests.platform.helpers import ROOT, clean_env, manage

pytestmark = pytest.mark.celery_worker


def test_beat_fires_a_periodic_job_that_a_worker_runs_over_the_embedded_broker(tmp_path):
    env = clean_env(
        DEBUG="1",
        SECRET_KEY=secrets.token_urlsafe(40),
        DATABASE_URL=f"sqlite:///{tmp_path / 'app.sqlite3'}",
        CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
        CELERY_RESULT_BACKEND=f"db+sqlite:///{tmp_path / 'results.sqlite3'}",
        BEAT_HEARTBEAT_SECONDS="1",
        PYTHONPATH=str(ROOT),
    )
    assert manage("migrate", "--noinput", env=env, timeout=120).returncode == 0
    assert manage("createcachetable", env=env).returncode == 0
    celery = [sys.executable, "-m", "celery", "-A", "fintech_portal"]
    processes = [
        subprocess.Popen(
            [*celery, "worker", "--pool", "solo", "-l", "warning"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [*celery, "beat", "-l", "warning", "--schedule", str(tmp_path / "beat-schedule")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    probe = "from django.core.cache import cache; print(cache.get('beat:last-heartbeat'))"
    try:
        heartbeat = "None"
        for _ in range(40):
            time.sleep(1)
            result = manage("shell", "--no-imports", "-c", probe, env=env)
            heartbeat = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "None"
            if heartbeat != "None":
                break
        assert heartbeat != "None", "beat's heartbeat never reached a worker"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.mark.django_db
def test_clear_expired_sessions_removes_only_expired_ones():
    from datetime import timedelta

    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    from fintech_portal.tasks import clear_expired_sessions

    live, dead = SessionStore(), SessionStore()
    live.create()
    dead.create()
    Session.objects.filter(session_key=dead.session_key).update(
        expire_date=timezone.now() - timedelta(minutes=1)
    )
    clear_expired_sessions()
    clear_expired_sessions()  # twice: no harm
    assert list(Session.objects.values_list("session_key", flat=True)) == [live.session_key]
