"""`make run`'s launcher serves the app with a worker and beat, and one Ctrl-C stops all three."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.platform.helpers import ROOT, clean_env, manage

pytestmark = pytest.mark.celery_worker


# Sends a ping to each queue (through the launcher's broker) and prints the answers. The names
# are the settings' CELERY_TASK_DEFAULT_QUEUE and MERCHANT_WEBHOOK_QUEUE.
QUEUE_PROBE = """
import django
from fintech_portal.celery import app
django.setup()
from fintech_portal.tasks import ping
for queue in ("celery", "merchant_webhooks"):
    print(ping.apply_async(args=[queue], queue=queue).get(timeout=60))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """Every live process whose ancestry leads to ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier} - found
        found |= children
        frontier = children
    return found


def test_launcher_serves_runs_worker_and_beat_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    env = clean_env(
        DEBUG="1",
        PORT=str(port),
        SECRET_KEY=secrets.token_urlsafe(40),
        DATABASE_URL=f"sqlite:///{tmp_path / 'app.sqlite3'}",
        CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
        CELERY_RESULT_BACKEND=f"db+sqlite:///{tmp_path / 'results.sqlite3'}",
        PYTHONPATH=str(ROOT),
    )
    assert manage("migrate", "--noinput", env=env, timeout=120).returncode == 0
    assert manage("createcachetable", env=env).returncode == 0
    launcher = subprocess.Popen(
        [sys.executable, "bin/dev.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        ready = None
        for _ in range(60):
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as response:  # noqa: S310
                    ready = json.loads(response.read())
                    break
            except OSError:
                continue
        assert ready and ready["status"] == "ok"
        children = descendants(launcher.pid)
        commands = " ".join(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ") for pid in children)
        assert "runserver" in commands and " worker" in commands and " beat" in commands
        # Both queues are consumed, by different workers: a task sent to each is answered.
        probe = subprocess.run(
            [sys.executable, "-c", QUEUE_PROBE],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert probe.returncode == 0, probe.stdout + probe.stderr
        assert probe.stdout.split() == ["pong:celery", "pong:merchant_webhooks"], probe.stdout
        queues = {
            pid: Path(f"/proc/{pid}/cmdline").read_text().split("\0")
            for pid in children
            if " worker " in Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
        }
        consumed = [argv[argv.index("-Q") + 1] for argv in queues.values() if "-Q" in argv]
        assert "merchant_webhooks" in consumed and "celery" in consumed
        assert all("," not in queue for queue in consumed)  # no worker serves both

        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=30) == 0
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in children):
            time.sleep(0.2)
        alive = [pid for pid in children if os.path.exists(f"/proc/{pid}")]
        assert not alive, f"still running after Ctrl-C: {alive}"
    finally:
        if launcher.poll() is None:
            launcher.kill()
