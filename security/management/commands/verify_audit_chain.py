"""``manage.py verify_audit_chain``: exit 0 when the chain is intact, 1 naming the first bad event.

Events before the ``audit.chain_keyed`` cut-over carry plain SHA-256 hashes; the
cut-over and every later event an HMAC under ``AUDIT_CHAIN_KEY`` (older stretches
under a key in ``AUDIT_CHAIN_PREVIOUS_KEYS``). A plain hash after the cut-over, or
a chain that ends unkeyed, is a rewrite by someone without the key.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from security.archive import ArchiveInvalid, verify_archive
from security.audit import verify_chain


def _checkpoint(text: str) -> tuple[int, str]:
    number, sep, digest = text.partition(":")
    if not sep or not number.isdigit() or len(digest) != 64:
        raise CommandError("--checkpoint must look like N:HASH (sequence and 64-hex-digit hash).")
    return int(number), digest.lower()


class Command(BaseCommand):
    help = (
        "Verify the audit log's hash chain (from the latest archive checkpoint, or genesis): plain "
        "SHA-256 before the audit.chain_keyed cut-over, HMAC under AUDIT_CHAIN_KEY from it on."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--checkpoint",
            help="Start from 'N:H' (archived up to sequence N with last hash H) "
            "instead of the stored checkpoint.",
        )
        parser.add_argument(
            "--archive", action="append", default=[], help="Also verify this archive file (repeatable)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for name in options["archive"]:
            try:
                archived = verify_archive(Path(name))
            except ArchiveInvalid as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(
                f"Archive {Path(name).name} intact: events #{archived.first_sequence} to "
                f"#{archived.through_sequence}, last hash {archived.last_hash}."
            )
        checkpoint = _checkpoint(options["checkpoint"]) if options["checkpoint"] else None
        started = time.monotonic()
        report = verify_chain(checkpoint=checkpoint)
        elapsed = time.monotonic() - started
        if not report.ok:
            raise CommandError(report.describe())
        self.stdout.write(self.style.SUCCESS(f"{report.describe()} ({elapsed:.2f} s)"))
