"""CSV exports of a merchant's payments: requested from the list, built by a Celery task.

* :func:`payment_export_create` stores the request (the list's filters, checked)
  and enqueues :func:`payments.tasks.export_payments` on commit.
* :func:`payment_export_run` (the task's body) builds the file in keyset batches,
  reporting progress; each batch's CSV is stored as one part, encrypted under the
  merchant's data key, so memory stays flat however large the export. It is
  idempotent: a finished export is left alone, a run cut short starts over.
* :func:`payment_export_download` hands the file to a team member a part at a
  time (for a streaming response) and audits it.

Customer emails: roles the role table allows ``payments.export_full_emails``
(owners and admins, who can already reveal them on a payment) get them in full;
every other role gets them masked (``j•••@example.com``). The downloader's role
is checked again at download time: an export holding full emails is refused to
anyone whose current role does not allow them, whoever made it.
Every cell that a spreadsheet would read as a formula (starting with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return) is prefixed with ``'``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts import merchant_roles
from accounts.models import Merchant, User
from accounts.selectors import member_role
from payments import money, selectors
from payments.forms_dashboard import PaymentFilterForm, PaymentFilters
from payments.keyset import Anchor, keyset_rows
from payments.models import Payment, PaymentExport, PaymentExportPart
from security import audit
from security.crypto import is_erased, preload_keys
from security.errors import ApplicationError, IllegalTransition, PermissionDeniedError
from security.masking import mask_email

EXPORT_TTL = timedelta(days=7)
FULL_EMAILS_REFUSED = "export_full_emails_refused"
FULL_EMAILS_REFUSAL = (
    "This export holds customers' full email addresses, which only owners and admins may download. "
    "Start your own export of the same payments instead: it masks the emails."
)
BATCH = 1000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
COLUMNS = [
    "id",
    "created_utc",
    "status",
    "amount",
    "currency",
    "amount_refunded",
    "gateway",
    "mode",
    "customer_email",
    "card_brand",
    "card_last4",
    "risk_outcome",
    "decline_code",
    "description",
]

X = PaymentExport.Status
EXPORT_TRANSITIONS: dict[str, frozenset[str]] = {
    X.QUEUED: frozenset({X.RUNNING, X.FAILED}),
    X.RUNNING: frozenset({X.SUCCEEDED, X.FAILED}),
    X.SUCCEEDED: frozenset(),
    X.FAILED: frozenset(),
}


def safe_cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run as a formula (OWASP's CSV injection advice)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _transition(export: PaymentExport, to: str, *, fields: dict[str, Any] | None = None) -> None:
    if to not in EXPORT_TRANSITIONS[export.status]:
        raise IllegalTransition(f"An export cannot move from {export.status} to {to}.")
    export.status = to
    for name, value in (fields or {}).items():
        setattr(export, name, value)
    export.save(update_fields=["status", *(fields or {})])


def payment_export_progress(export: PaymentExport) -> dict[str, Any]:
    """What the export's page and its progress JSON show: counts, percent and a sentence."""
    done = export.rows_done
    if export.status == X.SUCCEEDED:
        message = f"Done: {done:,} payment{'s' if done != 1 else ''} exported."
    elif export.status == X.FAILED:
        message = export.error or "The export failed."
    elif export.status == X.QUEUED:
        message = "Waiting for a worker…"
    else:
        message = f"{done:,} of {export.rows_total:,} payments ({export.percent}%)"
    return {
        "id": export.public_id,
        "status": export.status,
        "done": done,
        "total": export.rows_total,
        "percent": export.percent,
        "message": message,
    }


def filters_from(raw: dict[str, str]) -> PaymentFilters:
    form = PaymentFilterForm(raw)
    if not form.is_valid():
        raise ApplicationError("The export's filters are not valid.", code="invalid_filters")
    return form.filters()


def payment_export_create(
    *, actor: User, merchant: Merchant, role: str, raw_filters: dict[str, str]
) -> PaymentExport:
    """Queue an export of the payments matching ``raw_filters`` (the list's query string).

    ``role`` is the requester's role as the view saw it; the role checked is the current one.
    """
    filters_from(raw_filters)  # refuse bad filters now, not in the worker
    with transaction.atomic():
        current = member_role(actor, merchant.pk)
        if not merchant_roles.role_can(current, merchant_roles.PAYMENTS_EXPORT):
            raise PermissionDeniedError(merchant_roles.refusal(current, merchant_roles.PAYMENTS_EXPORT))
        export = PaymentExport.objects.create(
            merchant=merchant,
            requested_by=actor,
            filters=raw_filters,
            full_emails=merchant_roles.role_can(current, merchant_roles.PAYMENTS_EXPORT_FULL_EMAILS),
        )
        audit.record(
            actor=actor,
            action="payments.export_requested",
            target=export,
            merchant=merchant,
            details={"filters": sorted(raw_filters), "full_emails": export.full_emails},
        )
        from payments import tasks

        pk = export.pk
        transaction.on_commit(lambda: tasks.export_payments.delay(pk))
    return export


def _row(payment: Payment, *, full_emails: bool) -> list[str]:
    email: Any = ""
    if payment.customer is not None:
        email = payment.customer.email
        if is_erased(email):
            email = "[erased]"
        elif not full_emails:
            email = mask_email(email)
    cells = [
        payment.public_id,
        payment.created_at.astimezone(UTC).isoformat(timespec="seconds"),
        payment.status,
        str(money.to_decimal(payment.amount, payment.currency)),
        payment.currency,
        str(money.to_decimal(payment.amount_refunded, payment.currency)),
        payment.gateway,
        payment.mode,
        email,
        payment.card_brand,
        payment.card_last4,
        payment.fraud_outcome,
        payment.decline_code,
        payment.description,
    ]
    return [safe_cell(c) for c in cells]


def _csv_text(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def payment_export_run(*, export_pk: int, batch_size: int | None = None) -> str:
    """Build the export's CSV (the task's body). Returns the final status."""
    batch_size = batch_size or BATCH
    with transaction.atomic():
        export = (
            PaymentExport.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=export_pk)
        )
        if export.status in (X.SUCCEEDED, X.FAILED):
            return export.status
        filters = filters_from(export.filters)
        qs = selectors.payments_for_export(export.merchant, filters)
        total = qs.count()
        fields = {"rows_done": 0, "rows_total": total, "size": 0, "started_at": timezone.now()}
        restarted = export.status != X.QUEUED
        if not restarted:
            _transition(export, X.RUNNING, fields=fields)
        else:  # a run cut short (worker lost): start over
            export.parts.all().delete()
            for name, value in fields.items():
                setattr(export, name, value)
            export.save(update_fields=list(fields))
        audit.record(
            actor=None,
            action="payments.export_started",
            target=export,
            merchant=export.merchant,
            details={"rows": total, "restarted": restarted},
        )
    done = size = 0
    anchor: Anchor | None = None
    number = 0
    more = True
    while more:
        # The dashboard's keyset paginator: each batch costs the same however deep it is.
        batch, more = keyset_rows(qs, anchor=anchor, before=False, limit=batch_size)
        preload_keys([p.customer for p in batch if p.customer is not None])
        rows = [_row(payment, full_emails=export.full_emails) for payment in batch]
        content = _csv_text([COLUMNS, *rows] if number == 0 else rows)
        done += len(batch)
        size += len(content)
        with transaction.atomic():
            PaymentExportPart.objects.create(
                export=export, merchant_id=export.merchant_id, number=number, rows=len(batch), content=content
            )
            PaymentExport.objects.filter(pk=export.pk).update(
                rows_done=done, rows_total=max(total, done), size=size
            )
        number += 1
        if batch:
            anchor = (batch[-1].created_at, batch[-1].pk)
    with transaction.atomic():
        locked = (
            PaymentExport.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=export_pk)
        )
        if locked.status != X.RUNNING:
            return locked.status
        now = timezone.now()
        _transition(
            locked,
            X.SUCCEEDED,
            fields={
                "size": size,
                "rows_done": done,
                "rows_total": done,
                "finished_at": now,
                "expires_at": now + EXPORT_TTL,
            },
        )
        audit.record(
            actor=locked.requested_by,
            action="payments.exported",
            target=locked,
            merchant=locked.merchant,
            details={"rows": done, "full_emails": locked.full_emails},
        )
    return X.SUCCEEDED


def payment_export_fail(*, export_pk: int, reason: str) -> None:
    """Give up on an export; the parts a cut-short run wrote go too (nothing else would ever purge them)."""
    with transaction.atomic():
        export = (
            PaymentExport.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=export_pk)
        )
        if export.status in (X.QUEUED, X.RUNNING):
            export.parts.all().delete()
            _transition(
                export, X.FAILED, fields={"error": reason[:300], "finished_at": timezone.now(), "size": 0}
            )
            audit.record(actor=None, action="payments.export_failed", target=export, merchant=export.merchant)


def export_downloadable_by(export: PaymentExport, role: str | None) -> bool:
    """Whether a member with ``role`` may have this export's file (full emails need the role)."""
    return not export.full_emails or merchant_roles.role_can(role, merchant_roles.PAYMENTS_EXPORT_FULL_EMAILS)


def payment_export_download(*, actor: User, export: PaymentExport) -> Iterator[bytes]:
    """The export's file for a team member of its merchant, a part at a time; audited.

    Checks and the audit event happen here, before the first byte is sent; the parts are
    read (and decrypted) one by one as the response streams. An export holding full customer
    emails goes only to someone whose *current* role allows them (the role table), whoever
    made it; a refusal is audited.
    """
    role = member_role(actor, export.merchant_id)
    if not export_downloadable_by(export, role):
        audit.record(
            actor=actor,
            action="payments.export_download_refused",
            target=export,
            merchant=export.merchant,
            details={"role": role or "", "reason": "full_emails"},
        )
        raise PermissionDeniedError(FULL_EMAILS_REFUSAL, code=FULL_EMAILS_REFUSED)
    with transaction.atomic():
        locked = (
            PaymentExport.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=export.pk)
        )
        if locked.status != X.SUCCEEDED:
            raise ApplicationError("This export is not ready.", code="export_not_ready")
        first = locked.parts.select_related("merchant").order_by("number").first()
        if locked.is_expired() or first is None:
            raise ApplicationError(
                "This export has expired (files are kept for 7 days). Start a new one.", code="export_expired"
            )
        head = first.content
        if is_erased(head):
            raise ApplicationError("This export can no longer be read.", code="export_erased")
        locked.downloads += 1
        locked.save(update_fields=["downloads"])
        audit.record(
            actor=actor,
            action="payments.export_downloaded",
            target=locked,
            merchant=locked.merchant,
            details={"rows": locked.rows_done},
        )
    return _parts(locked.pk, head=bytes(head), after=first.number)


def _parts(export_pk: int, *, head: bytes, after: int) -> Iterator[bytes]:
    """The first part (already read and decrypted for the checks), then the others one by one."""
    yield head
    numbers = list(
        PaymentExportPart.objects.filter(export_id=export_pk, number__gt=after)
        .order_by("number")
        .values_list("pk", flat=True)
    )
    for pk in numbers:
        part = PaymentExportPart.objects.select_related("merchant").filter(pk=pk).first()
        if part is None or is_erased(part.content):
            return  # purged or erased while streaming: stop rather than send a broken row
        yield bytes(part.content)


def payment_exports_purge(*, now: Any = None) -> int:
    """Drop the files of expired exports (the rows stay, as a record of what was exported)."""
    now = now or timezone.now()
    purged = 0
    for export in PaymentExport.objects.filter(expires_at__lte=now, size__gt=0):
        with transaction.atomic():
            export.parts.all().delete()
            export.size = 0
            export.save(update_fields=["size"])
        purged += 1
    return purged
