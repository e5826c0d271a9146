"""Fixtures for the security tests: test-only tables, key settings, audit helpers."""

from __future__ import annotations

import base64
import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection

from security import crypto
from tests.security.testmodels import TEST_MODELS


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):  # noqa: ANN001 - extends pytest-django's fixture
    with django_db_blocker.unblock():
        existing = set(connection.introspection.table_names())
        with connection.schema_editor() as editor:
            for model in TEST_MODELS:
                if model._meta.db_table not in existing:
                    editor.create_model(model)
    yield


@pytest.fixture(autouse=True)
def _fresh_key_cache() -> Iterator[None]:
    crypto.clear_key_cache()
    yield
    crypto.clear_key_cache()


def random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@contextmanager
def audit_triggers_disabled() -> Iterator[None]:
    """Switch the append-only triggers off, as an attacker with DDL rights could."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE security_auditevent DISABLE TRIGGER USER")
        else:
            cursor.execute("DROP TRIGGER security_auditevent_no_update")
            cursor.execute("DROP TRIGGER security_auditevent_no_delete")
    try:
        yield
    finally:
        triggers = importlib.import_module("security.migrations.0003_audit_append_only")
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("ALTER TABLE security_auditevent ENABLE TRIGGER USER")
            else:
                for sql in triggers.SQLITE_FORWARD:
                    cursor.execute(sql)
