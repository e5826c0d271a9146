#!/usr/bin/env python
"""Run every benchmark in bench/ in its own process and print their figures."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in {"run_all.py", "_setup.py"})
    only = set(sys.argv[1:])
    failures = 0
    for script in scripts:
        if only and script.stem not in only:
            continue
        print(f"=== {script.stem}", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(script)], cwd=HERE.parent, check=False)
        print(
            f"=== {script.stem}: exit {result.returncode} in {time.monotonic() - started:.1f}s\n", flush=True
        )
        failures += result.returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
