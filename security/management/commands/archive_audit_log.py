"""``manage.py archive_audit_log --before YYYY-MM-DD --out FILE``: move old events to a signed file."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from security.archive import archive_audit_log
from security.errors import ApplicationError


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise CommandError("--before must be a date like 2025-01-31.") from exc


class Command(BaseCommand):
    help = (
        "Archive audit events older than --before (at least 3 months ago; policy: 12) to a signed "
        "JSON Lines file, remove them from the database and record a checkpoint."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--before", required=True, type=_date, help="Archive events before this date (UTC)."
        )
        parser.add_argument(
            "--out", required=True, type=Path, help="The archive file to write (must not exist)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            checkpoint = archive_audit_log(
                before=options["before"], out=options["out"], actor="manage.py archive_audit_log"
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Archived events #{checkpoint.first_sequence} to #{checkpoint.through_sequence} "
                f"({checkpoint.event_count}) to {options['out']}. Checkpoint: archived up to sequence "
                f"{checkpoint.through_sequence} with last hash {checkpoint.last_hash}."
            )
        )
