"""A merchant filters the payments list, opens a payment, exports the list as CSV and downloads it."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from django.test import Client
from playwright.sync_api import Page, expect

from fintech_portal.celery import app
from payments import exports
from payments.models import PaymentExport
from tests.conftest import make_tenant
from tests.e2e.conftest import sign_in
from tests.payments.helpers import new_session, pay

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def queued_tasks():
    """Tasks go to an in-memory broker instead of running at once, so the page can show them queued;
    the test then does the worker's job itself."""
    eager, broker = app.conf.task_always_eager, app.conf.broker_url

    def fresh_pool() -> None:
        # Forget the app's cached pools (kombu keeps them, open, per broker URL): the next publish
        # uses the broker now configured.
        app._pool = None
        app.amqp._producer_pool = None

    fresh_pool()
    app.conf.task_always_eager = False
    app.conf.broker_url = "memory://"
    yield
    fresh_pool()
    app.conf.task_always_eager, app.conf.broker_url = eager, broker


def test_merchant_filters_opens_a_payment_and_downloads_an_export(
    live_server, page: Page, shot, queued_tasks
):
    tenant = make_tenant("dash")
    customer = Client()
    for i, method in enumerate(["pm_card_visa", "pm_card_chargeDeclinedInsufficientFunds", "pm_card_visa"]):
        pay(customer, new_session(tenant, amount=1000 * (i + 1), email=f"buyer{i}@example.com"), method)
    pay(
        customer,
        new_session(tenant, amount=9900, currency="GBP", email="big@example.com"),
        "pm_card_mastercard",
    )
    base = live_server.url

    sign_in(page, base, tenant.owner)

    # The overview draws the charts.
    expect(page.get_by_test_id("payments-overview")).to_be_visible()
    expect(page.get_by_test_id("total-succeeded")).to_have_text("3")
    shot("dashboard-overview-charts")

    page.get_by_role("link", name="Payments", exact=True).click()
    table = page.get_by_test_id("payments-table")
    expect(table.locator("tr[data-payment]")).to_have_count(4)
    page.get_by_label("Status").select_option("succeeded")
    page.get_by_label("Currency").fill("EUR")
    page.get_by_label("Amount from").fill("15")
    page.get_by_role("button", name="Apply filters").click()
    expect(table.locator("tr[data-payment]")).to_have_count(1)
    expect(table.get_by_text("30.00 EUR")).to_be_visible()
    expect(table.get_by_text("b•••@example.com")).to_be_visible()
    shot("dashboard-payments-filtered")

    # A bad amount is explained, not a crash.
    page.get_by_label("Amount from").fill("lots")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.get_by_text("is not an amount")).to_be_visible()
    page.get_by_label("Amount from").fill("15")
    page.get_by_role("button", name="Apply filters").click()

    payment_id = table.locator("tr[data-payment]").first.get_attribute("data-payment")
    table.get_by_role("link", name=payment_id).click()
    expect(page).to_have_url(re.compile(rf"/payments/{payment_id}/$"))
    expect(page.get_by_text("Succeeded").first).to_be_visible()
    shot("dashboard-payment-detail")
    page.go_back()

    page.get_by_role("button", name="Export these payments as CSV").click()
    expect(page.get_by_test_id("export-status")).to_have_text("Queued")
    expect(page.get_by_test_id("export-progress")).to_be_visible()
    shot("dashboard-export-queued")
    export = PaymentExport.objects.get(merchant=tenant.merchant)
    assert export.filters == {"status": "succeeded", "currency": "EUR", "amount_min": "15"}
    exports.payment_export_run(export_pk=export.pk)  # what the Celery worker does
    # The page polls the progress endpoint (static JS) and shows the file once it is ready.
    expect(page.get_by_test_id("export-status")).to_have_text("Ready", timeout=15_000)
    shot("dashboard-export-ready")
    with page.expect_download() as info:
        page.get_by_test_id("export-download").click()
    download = info.value
    assert download.suggested_filename.endswith(f"{export.public_id}.csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert [(r["id"], r["amount"], r["customer_email"]) for r in rows] == [
        (payment_id, "30.00", "buyer2@example.com")
    ]
