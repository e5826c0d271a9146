"""Invitation tokens and password-reset keys never reach a log line: Django's, runserver's or gunicorn's.

Each journey runs through the test client; every request it makes is then also written the way
runserver (``WSGIRequestHandler.log_message``) and gunicorn (the logger class and access-log
format of ``deploy/gunicorn.conf.py``) write it, and Django's own request log is captured from
the configured handler.
"""

from __future__ import annotations

import io
import logging
import re
import runpy
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.conf import settings
from django.core import mail
from django.core.servers.basehttp import WSGIRequestHandler
from django.test import Client
from django.urls import reverse
from gunicorn.config import Config

from security.logs import SECRET_PATH_MARK, RedactingFilter, redact
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db
GUNICORN_CONF = Path(settings.BASE_DIR) / "deploy" / "gunicorn.conf.py"
NEW_PASSWORD = "an-entirely-new-passphrase-91"


class Logs:
    """What the writers put out while a journey runs: Django's handler (its request log and
    runserver's lines), and gunicorn's access log."""

    def __init__(self) -> None:
        self.django = io.StringIO()
        self.gunicorn = io.StringIO()
        self.paths: list[tuple[str, str, str, int]] = []
        conf = runpy.run_path(str(GUNICORN_CONF))
        cfg = Config()
        for name in ("access_log_format", "logger_class"):
            cfg.set(name, conf[name])
        cfg.set("accesslog", "-")
        self.gunicorn_logger = cfg.logger_class(cfg)
        for handler in self.gunicorn_logger.access_log.handlers:
            handler.setStream(self.gunicorn)

    def record(self, client: Client, method: str, url: str, **kwargs: Any) -> Any:
        response = getattr(client, method.lower())(url, **kwargs)
        request = response.wsgi_request
        self.paths.append((method, request.path, request.META.get("QUERY_STRING", ""), response.status_code))
        return response

    def write_access_lines(self) -> None:
        runserver = WSGIRequestHandler.__new__(WSGIRequestHandler)
        runserver.request = None
        for method, path, query, status in self.paths:
            uri = f"{path}?{query}" if query else path
            runserver.log_message('"%s" %s %s', f"{method} {uri} HTTP/1.1", str(status), "512")
            environ = {
                "REQUEST_METHOD": method,
                "RAW_URI": uri,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "SERVER_PROTOCOL": "HTTP/1.1",
                "REMOTE_ADDR": "203.0.113.9",
            }
            response = SimpleNamespace(status=f"{status} X", sent=512, headers=[])
            request = SimpleNamespace(headers=[("HOST", "portal.example.com")])
            self.gunicorn_logger.access(response, request, environ, timedelta(milliseconds=12))

    def everything(self) -> str:
        return self.django.getvalue() + "\n" + self.gunicorn.getvalue()


@pytest.fixture
def logs() -> Iterator[Logs]:
    """The handler settings.LOGGING gives Django's loggers, writing to a buffer for the test."""
    captured = Logs()
    handlers = {
        handler
        for name in ("django.request", "django.server")
        for handler in logging.getLogger(name).handlers
        if any(isinstance(f, RedactingFilter) for f in handler.filters)
    }
    assert handlers, "settings.LOGGING no longer gives these loggers the redacting handler"
    swapped = [(handler, handler.setStream(captured.django)) for handler in handlers]
    try:
        yield captured
    finally:
        for handler, original in swapped:
            handler.setStream(original)


def _link(pattern: str) -> str:
    return re.search(pattern, mail.outbox[-1].body).group(1)


def test_the_log_lines_of_an_invitation_hold_no_token(
    verified_client, tenant, client, logs, django_capture_on_commit_callbacks
) -> None:
    owner = verified_client(tenant.owner)
    with django_capture_on_commit_callbacks(execute=True):
        owner.post(reverse("team"), {"email": "new.person@example.com", "role": "developer"})
    link = _link(r"https?://[^/\s]+(/invite/[^\s]+/)")
    token = link.split("/")[2]

    assert logs.record(client, "GET", link).status_code == 200
    weak = logs.record(client, "POST", link, data={"full_name": "N", "password1": "x", "password2": "y"})
    assert weak.status_code == 400  # Django logs "Bad Request: <path>"
    done = logs.record(
        client, "POST", link, data={"full_name": "N", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert done.status_code == 302
    client.post(reverse("account_logout"))
    assert logs.record(client, "GET", link).status_code == 410  # used: "Gone: <path>"
    assert logs.record(client, "GET", link[:-3] + "zz/").status_code == 404  # "Not Found: <path>"
    logs.write_access_lines()

    assert "Bad Request: /invite/" in logs.django.getvalue()
    assert '"GET /invite/' in logs.django.getvalue()  # runserver's line
    assert '"GET /invite/' in logs.gunicorn.getvalue()
    for written in (logs.django.getvalue(), logs.gunicorn.getvalue()):
        assert f"/invite/{SECRET_PATH_MARK}/" in written
        assert token not in written and token[:-2] not in written


def test_the_log_lines_of_a_password_reset_hold_no_key(owner, client, logs) -> None:
    logs.record(client, "POST", reverse("account_reset_password"), data={"email": owner.email})
    link = _link(r"https?://[^/\s]+(/accounts/password/reset/key/[^\s]+/)")
    key = link.rstrip("/").rsplit("/", 1)[1]
    secret = key.split("-", 1)[1]

    opened = logs.record(client, "GET", link)
    assert opened.status_code == 302  # allauth keeps the key in the session and drops it from the URL
    form = opened["Location"]
    assert secret not in form
    logs.record(client, "GET", form)
    mismatch = logs.record(client, "POST", form, data={"password1": NEW_PASSWORD, "password2": "other"})
    assert mismatch.status_code == 200
    done = logs.record(client, "POST", form, data={"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert done.status_code == 302
    # A stale or mistyped link, and one sent along as ?next=
    logs.record(client, "GET", link)
    logs.record(client, "GET", reverse("account_login"), data={"next": link})
    logs.write_access_lines()

    written = logs.everything()
    assert '"GET /accounts/password/reset/key/' in logs.django.getvalue()
    assert f"/accounts/password/reset/key/{SECRET_PATH_MARK}/" in logs.gunicorn.getvalue()
    assert f"%2Faccounts%2Fpassword%2Freset%2Fkey%2F{SECRET_PATH_MARK}" in logs.django.getvalue()
    assert secret not in written and secret[:12] not in written
    assert "/accounts/password/reset/key/done/" in redact("GET /accounts/password/reset/key/done/")


def test_secret_paths_are_redacted_in_any_log_text() -> None:
    assert redact("Not Found: /invite/abcDEF123_-x/") == f"Not Found: /invite/{SECRET_PATH_MARK}/"
    assert redact("GET /accounts/login/?next=%2finvite%2Fabc123%2F") == (
        f"GET /accounts/login/?next=%2finvite%2F{SECRET_PATH_MARK}%2F"
    )
    assert redact("/accounts/password/reset/key/3f-c1x2y3-9a8b7c6d5e4f/") == (
        f"/accounts/password/reset/key/{SECRET_PATH_MARK}/"
    )
