"""Shared set-up for benchmarks: Django on a scratch database, outside the test runner."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def django_on_scratch_db(name: str) -> None:
    """Configure Django on a fresh SQLite file (or DATABASE_URL's server with a scratch database)."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789abcdefghijklmnop")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
    os.environ.setdefault("SESSION_COOKIE_SECURE", "0")
    os.environ.setdefault("CACHE_URL", "locmemcache://")
    os.environ.setdefault("STATIC_MANIFEST", "0")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        base = url.rsplit("/", 1)[0]
        os.environ["DATABASE_URL"] = f"{base}/fp_bench_{name}"
        import psycopg

        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "fp_bench_{name}"')
            conn.execute(f'CREATE DATABASE "fp_bench_{name}"')
    else:
        scratch = Path(tempfile.mkdtemp(prefix=f"fp-bench-{name}-")) / "bench.sqlite3"
        os.environ["DATABASE_URL"] = f"sqlite:///{scratch}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "fintech_portal.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
