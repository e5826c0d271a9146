"""Liveness and readiness probes."""

from __future__ import annotations

import json
import secrets
import socket

import pytest
from django.urls import reverse

from tests.platform.helpers import clean_env, manage

PROBE = (
    "from django.test import Client; r = Client().get('/readyz'); "
    "print(r.status_code); print(r.content.decode())"
)


def dead_port() -> int:
    """A local port with nothing listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_probe(tmp_path, **env_overrides: str) -> tuple[int, dict]:
    settings = {
        "DEBUG": "1",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "testserver",
        "CACHE_URL": "locmemcache://",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'probe.sqlite3'}",
    }
    env = clean_env(**{**settings, **env_overrides})
    result = manage("shell", "--no-imports", "-c", PROBE, env=env)
    assert result.returncode == 0, result.stderr
    status, body = result.stdout.strip().splitlines()[-2:]
    return int(status), json.loads(body)


def test_healthz_answers_while_the_process_lives(client):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ready_when_database_and_broker_answer(client):
    response = client.get(reverse("readyz"))
    assert response.status_code == 200, response.content
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_names_an_unreachable_broker(tmp_path):
    status, body = run_probe(tmp_path, REDIS_URL=f"redis://127.0.0.1:{dead_port()}/0")
    assert status == 503
    assert body["status"] == "unavailable"
    assert "broker" in body["reasons"] and "database" not in body["reasons"]


def test_readyz_names_an_unreachable_database(tmp_path):
    status, body = run_probe(tmp_path, DATABASE_URL=f"postgres://postgres@127.0.0.1:{dead_port()}/nothing")
    assert status == 503
    assert "database" in body["reasons"]
