"""``manage.py rotate_keys``: re-wrap every data key under the active KEK (resumable)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from security.errors import ApplicationError
from security.models import KeyRotation
from security.rotation import rotate_keys


class Command(BaseCommand):
    help = (
        "Re-wrap all data keys under the active KEK (the first of FIELD_ENCRYPTION_KEYS) in batches. "
        "Safe to run while the app serves traffic; resumes after a crash."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="Data keys per transaction.")
        parser.add_argument(
            "--max-batches",
            type=int,
            default=None,
            help="Stop after this many batches (run again to resume).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        def progress(run: KeyRotation) -> None:
            self.stdout.write(
                f"rotate_keys: batch {run.batches}: {run.done} of {run.total} data keys re-wrapped "
                f"under KEK {run.target_kek_id!r} ({run.percent}%)"
            )

        try:
            run = rotate_keys(
                actor="manage.py rotate_keys",
                batch_size=options["batch_size"],
                max_batches=options["max_batches"],
                progress=progress,
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        if run.status == KeyRotation.Status.COMPLETED:
            self.stdout.write(
                self.style.SUCCESS(
                    f"rotate_keys: complete: {run.done} data keys now wrapped by {run.target_kek_id!r}. "
                    "Older KEKs can be removed from the configuration once every process runs with it."
                )
            )
        else:
            self.stdout.write(
                f"rotate_keys: paused at {run.done} of {run.total}; run the command again to continue."
            )
