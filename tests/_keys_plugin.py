"""Loaded with ``-p`` before Django's settings: random keys for this test run.

Nothing key-shaped is committed for tests; every run gets fresh keys, and a
developer's own environment values win (``setdefault``).
"""

from __future__ import annotations

import base64
import os


def _random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


os.environ.setdefault("FIELD_ENCRYPTION_KEYS", f"t1:{_random_key()}")
os.environ.setdefault("BLIND_INDEX_KEY", _random_key())
os.environ.setdefault("AUDIT_CHAIN_KEY", _random_key())
