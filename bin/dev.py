#!/usr/bin/env python
"""Run the web server, a Celery worker and Celery beat together; Ctrl-C stops all three.

Used by ``make run``. Each child gets its own process group so a single Ctrl-C
(or a child dying) brings the whole set down cleanly.
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


def main() -> int:
    port = os.environ.get("PORT", "8000")
    os.environ.setdefault("DEBUG", "1")
    (ROOT / "var").mkdir(exist_ok=True)
    commands = {
        "web": [PY, "manage.py", "runserver", f"127.0.0.1:{port}"],
        "worker": [PY, "-m", "celery", "-A", "fintech_portal", "worker", "--pool", "solo", "-l", "info"],
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
        f"fintech_portal: http://127.0.0.1:{port}  (web, worker and beat running; Ctrl-C stops all)",
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
