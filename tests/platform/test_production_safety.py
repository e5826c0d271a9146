"""With DEBUG off the app refuses unsafe configuration and passes Django's deploy checks."""

from __future__ import annotations

import base64
import os
import secrets

from tests.platform.helpers import clean_env, manage

DEV_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"


def production_env(**overrides: str) -> dict[str, str]:
    base = {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "portal.example.com",
        "FIELD_ENCRYPTION_KEYS": f"k1:{base64.b64encode(os.urandom(32)).decode()}",
        "BLIND_INDEX_KEY": base64.b64encode(os.urandom(32)).decode(),
        "AUDIT_CHAIN_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    return clean_env(**{**base, **overrides})


def test_refuses_to_start_without_a_secret_key():
    env = production_env()
    del env["SECRET_KEY"]
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY is missing" in result.stderr


def test_refuses_to_start_with_the_development_secret_key():
    result = manage("check", env=production_env(SECRET_KEY=DEV_KEY))
    assert result.returncode != 0
    assert "development default" in result.stderr


def test_secret_key_can_come_from_a_file(tmp_path):
    key_file = tmp_path / "secret_key"
    key_file.write_text(secrets.token_urlsafe(50))
    env = production_env()
    del env["SECRET_KEY"]
    env["SECRET_KEY_FILE"] = str(key_file)
    result = manage("check", env=env)
    assert result.returncode == 0, result.stderr


def test_check_deploy_prints_no_warnings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_cookies_and_transport_are_locked_down():
    probe = (
        "from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, s.SESSION_COOKIE_SAMESITE, "
        "s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS >= 31536000)"
    )
    result = manage("shell", "--no-imports", "-c", probe, env=production_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "Lax", "True", "True", "True"]
