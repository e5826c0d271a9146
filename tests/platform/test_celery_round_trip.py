"""One real Celery round trip: this process enqueues on Redis, a worker process answers."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time

import pytest

from fintech_portal.celery import app
from fintech_portal.tasks import ping
from tests.platform.helpers import ROOT, clean_env

pytestmark = pytest.mark.celery_worker


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        pytest.skip("REDIS_URL is not set: the round trip needs a Redis broker (CI sets it)")
    return url


def test_a_worker_process_consumes_a_task_from_redis_and_replies(redis_url):
    queue = f"roundtrip-{secrets.token_hex(4)}"
    env = clean_env(DEBUG="1", REDIS_URL=redis_url, CACHE_URL="locmemcache://", PYTHONPATH=str(ROOT))
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "fintech_portal",
            "worker",
            "--pool",
            "solo",
            "-Q",
            queue,
            "-l",
            "warning",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    app.conf.task_always_eager = False
    try:
        token = secrets.token_hex(8)
        started = time.monotonic()
        result = ping.apply_async(args=[token], queue=queue)
        assert result.get(timeout=60) == f"pong:{token}"
        assert result.successful()
        print(f"round trip in {time.monotonic() - started:.2f}s")
    finally:
        app.conf.task_always_eager = True
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()


def test_the_compose_webhook_worker_consumes_the_merchant_webhooks_queue_from_redis(redis_url):
    import yaml
    from django.conf import settings

    command = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]["webhook-worker"][
        "command"
    ]
    assert command[:4] == ["celery", "-A", "fintech_portal", "worker"]
    env = clean_env(DEBUG="1", REDIS_URL=redis_url, CACHE_URL="locmemcache://", PYTHONPATH=str(ROOT))
    worker = subprocess.Popen(
        [sys.executable, "-m", *command, "--concurrency", "1", "--without-gossip", "--without-mingle"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    app.conf.task_always_eager = False
    try:
        token = secrets.token_hex(8)
        result = ping.apply_async(args=[token], queue=settings.MERCHANT_WEBHOOK_QUEUE)
        assert result.get(timeout=60) == f"pong:{token}"
    finally:
        app.conf.task_always_eager = True
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
