"""gunicorn's logger, redacting its access and error lines like every other log (``deploy/gunicorn.conf.py``).

An access line holds the request path (``%(U)s``), and paths can hold secrets: an
invitation token (``/invite/<token>/``) or a password-reset key. This logger puts the
project's :class:`~security.logs.RedactingFilter` on gunicorn's two loggers, so each
line is rendered once and redacted (secret path segments, card numbers, email
addresses...) before any handler writes it, whatever handlers ``logconfig`` sets up.
Only the standard library and ``security.logs`` are imported: gunicorn loads this
before Django.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from security.logs import RedactingFilter

_FILTER = RedactingFilter()


class RedactingGunicornLogger(Logger):
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            log.addFilter(_FILTER)  # once: addFilter ignores a filter it already has
