"""CSV exports: a Celery job with progress, exactly the filtered rows, encrypted at rest, audited."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from payments import exports, tasks
from payments.models import Payment, PaymentExport, PaymentExportPart
from security.models import AuditEvent
from tests.payments.dashboard_helpers import BASE_TIME, make_many, make_payment

pytestmark = pytest.mark.django_db


def start_export(client, capture, query: dict[str, str], *, run: bool = True) -> PaymentExport:
    with capture(execute=run):
        response = client.post("/payments/export/", query)
    assert response.status_code == 302, response.content.decode()
    public_id = re.search(r"/payments/exports/(exp_[A-Za-z0-9]+)/", response["Location"]).group(1)
    return PaymentExport.objects.get(public_id=public_id)


def stored_csv(export: PaymentExport) -> bytes:
    """The file as the download streams it: its parts in order."""
    return b"".join(bytes(p.content) for p in export.parts.order_by("number"))


def read_csv(response) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"))))


def test_an_export_holds_exactly_the_filtered_payments(
    verified_client, tenant, outsider, django_capture_on_commit_callbacks
):
    m = tenant.merchant
    wanted = make_many(m, 7, status=Payment.Status.FAILED, amount=1500, email="jane@example.com")
    make_many(m, 3, status=Payment.Status.FAILED, amount=500)  # below the amount filter
    make_many(m, 4, amount=1500)  # succeeded
    make_many(outsider.merchant, 5, status=Payment.Status.FAILED, amount=1500)
    client = verified_client(tenant.owner)
    export = start_export(
        client,
        django_capture_on_commit_callbacks,
        {"status": "failed", "amount_min": "10.00", "currency": "EUR"},
    )
    export.refresh_from_db()
    assert export.status == PaymentExport.Status.SUCCEEDED
    assert (export.rows_done, export.rows_total) == (7, 7)
    response = client.get(f"/payments/exports/{export.public_id}/download/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="payments-' in response["Content-Disposition"]
    rows = read_csv(response)
    assert [r["id"] for r in rows] == [p.public_id for p in wanted]
    assert {r["amount"] for r in rows} == {"15.00"} and {r["currency"] for r in rows} == {"EUR"}
    # Owners and admins get the customer's email in full.
    assert {r["customer_email"] for r in rows} == {"jane@example.com"}
    actions = set(AuditEvent.objects.filter(merchant_id=m.public_id).values_list("action", flat=True))
    assert {
        "payments.export_requested",
        "payments.export_started",
        "payments.exported",
        "payments.export_downloaded",
    } <= actions


def test_analysts_get_masked_emails(verified_client, tenant, django_capture_on_commit_callbacks):
    make_payment(tenant.merchant, email="jane@example.com")
    client = verified_client(tenant.teammate)
    export = start_export(client, django_capture_on_commit_callbacks, {})
    rows = read_csv(client.get(f"/payments/exports/{export.public_id}/download/"))
    assert [r["customer_email"] for r in rows] == ["j•••@example.com"]
    assert "masked" in client.get(f"/payments/exports/{export.public_id}/").content.decode()


def test_the_page_shows_progress_until_the_file_is_ready(
    verified_client, tenant, django_capture_on_commit_callbacks
):
    make_many(tenant.merchant, 5)
    client = verified_client(tenant.owner)
    export = start_export(client, django_capture_on_commit_callbacks, {}, run=False)
    page = client.get(f"/payments/exports/{export.public_id}/").content.decode()
    assert f'data-progress-url="/payments/exports/{export.public_id}/progress.json"' in page
    assert "<progress" in page and "Refresh" in page  # works without JavaScript too
    assert "<script>" not in page
    assert "<p data-progress-text>Waiting for a worker…</p>" in page
    progress = client.get(f"/payments/exports/{export.public_id}/progress.json").json()
    assert progress["status"] == "queued" and progress["done"] == 0
    assert progress["message"] == "Waiting for a worker…"

    exports.payment_export_run(export_pk=export.pk)
    progress = client.get(f"/payments/exports/{export.public_id}/progress.json").json()
    assert progress["status"] == "succeeded"
    assert (progress["done"], progress["total"], progress["percent"]) == (5, 5, 100)
    assert progress["message"] == "Done: 5 payments exported."
    page = client.get(f"/payments/exports/{export.public_id}/").content.decode()
    assert 'data-testid="export-download"' in page and "data-progress-url" not in page


def test_batches_neither_repeat_nor_skip_rows_and_running_twice_is_harmless(tenant):
    m = tenant.merchant
    make_many(m, 9)
    make_many(m, 4, start=BASE_TIME - timedelta(minutes=3), step=timedelta(0))  # ties on created_at
    export = PaymentExport.objects.create(merchant=m, requested_by=tenant.owner, filters={}, full_emails=True)
    assert exports.payment_export_run(export_pk=export.pk, batch_size=2) == "succeeded"
    export.refresh_from_db()
    rows = list(csv.DictReader(io.StringIO(stored_csv(export).decode())))
    expected = list(
        Payment.objects.filter(merchant=m).order_by("-created_at", "-id").values_list("public_id", flat=True)
    )
    assert [r["id"] for r in rows] == expected
    # Written a batch at a time: 13 rows in parts of 2, the header in the first only.
    assert list(export.parts.order_by("number").values_list("rows", flat=True)) == [2, 2, 2, 2, 2, 2, 1]
    assert export.size == len(stored_csv(export))
    before = stored_csv(export)
    assert exports.payment_export_run(export_pk=export.pk) == "succeeded"  # a redelivered task
    export.refresh_from_db()
    assert stored_csv(export) == before
    assert AuditEvent.objects.filter(action="payments.exported", target_id=export.public_id).count() == 1


def test_another_merchant_cannot_see_or_download_an_export(
    verified_client, tenant, outsider, django_capture_on_commit_callbacks
):
    make_payment(tenant.merchant)
    export = start_export(verified_client(tenant.owner), django_capture_on_commit_callbacks, {})
    stranger = verified_client(outsider.owner)
    for suffix in ("", "progress.json", "download/"):
        assert stranger.get(f"/payments/exports/{export.public_id}/{suffix}").status_code == 404
    assert export.public_id not in stranger.get("/payments/exports/").content.decode()
    assert not AuditEvent.objects.filter(action="payments.export_downloaded").exists()


def test_the_file_is_encrypted_at_rest_and_expires(
    verified_client, tenant, django_capture_on_commit_callbacks
):
    make_payment(tenant.merchant, email="jane@example.com", description="Order 77")
    client = verified_client(tenant.owner)
    export = start_export(client, django_capture_on_commit_callbacks, {})
    with connection.cursor() as cursor:
        cursor.execute("SELECT content FROM payments_paymentexportpart WHERE export_id = %s", [export.pk])
        raw = b"".join(r.encode() if isinstance(r, str) else bytes(r) for (r,) in cursor.fetchall())
    stored = raw
    assert (
        stored
        and b"jane@example.com" not in stored
        and b"Order 77" not in stored
        and b"customer_email" not in stored
    )
    PaymentExport.objects.filter(pk=export.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get(f"/payments/exports/{export.public_id}/download/", follow=True)
    assert "has expired" in response.content.decode()
    assert exports.payment_exports_purge() == 1
    export.refresh_from_db()
    assert export.size == 0 and not PaymentExportPart.objects.filter(export=export).exists()


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("Order 1042", "Order 1042"),
        ("", ""),
    ],
)
def test_cells_that_look_like_formulas_are_neutralised(value, safe):
    assert exports.safe_cell(value) == safe


def test_formula_injection_in_a_description_is_neutralised_in_the_file(
    verified_client, tenant, django_capture_on_commit_callbacks
):
    make_payment(tenant.merchant, description='=HYPERLINK("http://evil.example","click")')
    make_payment(tenant.merchant, description="@SUM(1+1)", created_at=BASE_TIME - timedelta(seconds=1))
    client = verified_client(tenant.owner)
    export = start_export(client, django_capture_on_commit_callbacks, {})
    rows = read_csv(client.get(f"/payments/exports/{export.public_id}/download/"))
    assert [r["description"] for r in rows] == ['\'=HYPERLINK("http://evil.example","click")', "'@SUM(1+1)"]


def test_bad_filters_are_refused_before_anything_is_queued(verified_client, tenant):
    response = verified_client(tenant.owner).post("/payments/export/", {"amount_min": "lots"}, follow=True)
    assert "Fix the filters" in response.content.decode()
    assert not PaymentExport.objects.exists()


def test_a_large_export_downloads_as_one_file_streamed_part_by_part(
    verified_client, tenant, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(exports, "BATCH", 3)
    make_many(tenant.merchant, 8)
    client = verified_client(tenant.owner)
    export = start_export(client, django_capture_on_commit_callbacks, {})
    export.refresh_from_db()
    assert export.parts.count() == 3

    with CaptureQueriesContext(connection) as ctx:
        response = client.get(f"/payments/exports/{export.public_id}/download/")
        assert response.streaming and response["Content-Length"] == str(export.size)
        chunks = list(response.streaming_content)
    # Each part is read (and decrypted) once, plus one query listing them.
    part_reads = [q for q in ctx.captured_queries if "payments_paymentexportpart" in q["sql"]]
    assert len(part_reads) == 3 + 1

    assert len(chunks) == 3
    body = b"".join(chunks).decode()
    assert body.count("\r\n") == 9 and body.startswith("id,created_utc,")  # header + 8 rows
    assert (
        AuditEvent.objects.filter(action="payments.export_downloaded", target_id=export.public_id).count()
        == 1
    )


def test_an_export_that_fails_part_way_keeps_no_file_and_says_so(verified_client, tenant):
    make_many(tenant.merchant, 5, email="jane@example.com")
    export = PaymentExport.objects.create(
        merchant=tenant.merchant, requested_by=tenant.owner, filters={}, full_emails=True
    )
    # A part already where the run's second batch goes: the run stops there, its first part written.
    PaymentExportPart.objects.create(export=export, merchant=tenant.merchant, number=1, content=b"x")
    with pytest.raises(IntegrityError):
        exports.payment_export_run(export_pk=export.pk, batch_size=2)
    assert PaymentExportPart.objects.filter(export=export, number=0).exists()

    exports.payment_export_fail(export_pk=export.pk, reason="The export could not be built. Try again.")

    assert not PaymentExportPart.objects.filter(export=export).exists()
    client = verified_client(tenant.owner)
    page = client.get(f"/payments/exports/{export.public_id}/").content.decode()
    assert "The export could not be built. Try again." in page
    assert 'data-testid="export-download"' not in page
    response = client.get(f"/payments/exports/{export.public_id}/download/", follow=True)
    assert "This export is not ready." in response.content.decode()
    assert AuditEvent.objects.filter(action="payments.export_failed", target_id=export.public_id).exists()


def test_an_export_whose_filters_no_longer_hold_fails_at_once_with_the_reason(verified_client, tenant):
    make_many(tenant.merchant, 2)
    export = PaymentExport.objects.create(
        merchant=tenant.merchant, requested_by=tenant.owner, filters={"currency": "XYZ"}, full_emails=False
    )

    tasks.export_payments.apply(args=[export.pk])  # one attempt, no retries waiting

    export.refresh_from_db()
    assert (export.status, export.error) == (
        PaymentExport.Status.FAILED,
        "The export's filters are not valid.",
    )
    page = verified_client(tenant.owner).get(f"/payments/exports/{export.public_id}/").content.decode()
    assert "The export&#x27;s filters are not valid." in page
