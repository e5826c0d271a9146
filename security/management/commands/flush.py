"""``flush`` that may empty the append-only audit table.

Emptying the whole database (``manage.py flush``, and the test runner between
transactional tests) is the one operation besides archiving that the audit
triggers allow; everything else about Django's ``flush`` is unchanged.
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands import flush

from security.audit import allow_audit_deletion


class Command(flush.Command):
    def handle(self, **options: Any) -> None:
        with allow_audit_deletion("flush", using=options["database"]):
            super().handle(**options)
