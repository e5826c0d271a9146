"""Shared set-up for the security benchmarks: fresh keys and a scratch database.

PostgreSQL when reachable (a scratch database, created here and dropped at the
end), otherwise a temporary SQLite file.
"""

from __future__ import annotations

import atexit
import base64
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=2):
            return True
    except Exception:  # noqa: BLE001 - any failure means "use SQLite"
        return False


def setup(db_name: str, *, require_postgres: bool = False) -> str:
    """Configure Django on a scratch database; returns the vendor."""
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "fintech_portal.settings"
    os.environ.setdefault("SECRET_KEY", _key())
    os.environ["DEBUG"] = "0"
    os.environ["FIELD_ENCRYPTION_KEYS"] = f"bench1:{_key()}"
    os.environ["BLIND_INDEX_KEY"] = _key()
    os.environ["AUDIT_CHAIN_KEY"] = _key()
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["CACHE_URL"] = "locmemcache://"
    if _pg_available():
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}"')
            conn.execute(f'CREATE DATABASE "{db_name}"')
        os.environ["DATABASE_URL"] = PG_ADMIN.rsplit("/", 1)[0] + "/" + db_name

        def drop() -> None:
            from django.db import connections

            connections.close_all()
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')

        atexit.register(drop)
    else:
        if require_postgres:
            raise SystemExit("This benchmark needs PostgreSQL on 127.0.0.1:5432 (set BENCH_PG_ADMIN_URL).")
        tmp = tempfile.mkdtemp(prefix="fp-bench-")
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/bench.sqlite3"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.db import connection

    return connection.vendor


def django_on_scratch_db(name: str) -> str:
    """Django on a fresh scratch database named after the benchmark (used by bench/pages.py)."""
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
    os.environ.setdefault("SESSION_COOKIE_SECURE", "0")
    os.environ.setdefault("STATIC_MANIFEST", "0")
    return setup(f"fp_bench_{name}")


def timed(fn, rounds: int) -> tuple[float, float]:
    """Call ``fn`` ``rounds`` times; returns (median, p95) in milliseconds."""
    import statistics
    import time

    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)]
