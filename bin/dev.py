#!/usr/bin/env python
"""Run the web server, the Celery workers and Celery beat together; Ctrl-C stops them all.

Used by ``make run``. Two workers: one for the default ``celery`` queue (gateway events,
exports, fraud cancels...), one for ``merchant_webhooks`` (deliveries to merchants' servers,
``settings.CELERY_TASK_ROUTES``), so a slow merchant never holds the first. The webhook worker
uses the prefork pool, which enforces the tasks' time limits. Each child gets its own process
group so a single Ctrl-C (or a child dying) brings the whole set down cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
WORKER = [PY, "-m", "celery", "-A", "fintech_portal", "worker", "-l", "info"]
# The queue names of fintech_portal/settings.py (CELERY_TASK_DEFAULT_QUEUE, MERCHANT_WEBHOOK_QUEUE).
DEFAULT_QUEUE = "celery"
MERCHANT_WEBHOOK_QUEUE = "merchant_webhooks"


def main() -> int:
    port = os.environ.get("PORT", "8000")
    os.environ.setdefault("DEBUG", "1")
    (ROOT / "var").mkdir(exist_ok=True)
    commands = {
        "web": [PY, "manage.py", "runserver", f"127.0.0.1:{port}"],
        "worker": [*WORKER, "--pool", "solo", "-Q", DEFAULT_QUEUE, "-n", "default@%h"],
        "webhook-worker": [
            *WORKER,
            "--pool",
            "prefork",
            "--concurrency",
            "2",
            "--prefetch-multiplier",
            "1",
            "-Q",
            MERCHANT_WEBHOOK_QUEUE,
            "-n",
            "webhooks@%h",
        ],
        "beat": [
            PY,
            "-m",
            "celery",
            "-A",
            "fintech_portal",
            "beat",
            "-l",
            "info",
            "--schedule",
            str(ROOT / "var" / "celerybeat-schedule"),
        ],
    }
    children: dict[str, subprocess.Popen[bytes]] = {}
    for name, cmd in commands.items():
        children[name] = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
    print(
        f"fintech_portal: http://127.0.0.1:{port}  (web, workers and beat running; Ctrl-C stops all)",
        flush=True,
    )

    def stop(*_: object) -> None:
        for child in children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
    try:
        while True:
            for name, child in children.items():
                code = child.poll()
                if code is not None:
                    print(f"fintech_portal: {name} exited with {code}; stopping the others.", flush=True)
                    stop()
                    return code or 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nfintech_portal: stopping…", flush=True)
        stop()
        return 0


if __name__ == "__main__":
    sys.exit(main())
