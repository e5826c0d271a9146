"""A developer registers a webhook endpoint, sees a payment event delivered, and resends it."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from playwright.sync_api import Page, expect

from payments.merchant_webhooks import signature_verify
from tests.conftest import make_tenant
from tests.e2e.conftest import sign_in
from tests.payments.helpers import new_session, pay
from tests.payments.webhook_helpers import receiver_url

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_developer_adds_an_endpoint_and_follows_its_deliveries(
    live_server, page: Page, shot, receiver, dns, settings
):
    settings.SITE_URL = live_server.url  # the simulated gateway's own webhooks come back to this server
    dns.answers["localhost"] = "127.0.0.1"
    tenant = make_tenant("hooks")
    base = live_server.url

    sign_in(page, base, tenant.owner)

    page.goto(f"{base}/developers/")
    page.get_by_role("link", name="Webhooks").click()
    expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()

    # An address on a private network is refused, with the reason.
    page.get_by_label("Endpoint URL").fill("https://10.0.0.7/hooks")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.get_by_text("This URL cannot receive webhooks")).to_be_visible()
    expect(page.get_by_text("a private address")).to_be_visible()
    shot("webhooks-unsafe-url")

    page.get_by_label("Endpoint URL").fill(receiver_url(receiver))
    page.get_by_label("Description (optional)").fill("Order system")
    page.get_by_role("button", name="Add endpoint").click()
    secret = page.get_by_test_id("webhook-secret").inner_text()
    assert secret.startswith("whsec_")
    shot("webhooks-secret-shown-once")

    # A customer pays: the event reaches the merchant's server, signed.
    pay(Client(), new_session(tenant, amount=2500), "pm_card_visa")
    [post] = receiver.posts
    assert signature_verify(secret=secret, body=post.body.decode(), header=post.header("Fintech-Signature"))
    assert json.loads(post.body)["type"] == "payment.succeeded"

    page.goto(f"{base}/developers/webhooks/")
    page.get_by_role("link", name=receiver_url(receiver)).click()
    rows = page.get_by_test_id("webhook-deliveries")
    expect(rows.get_by_text("payment.succeeded")).to_be_visible()
    expect(rows.get_by_text("Delivered")).to_be_visible()
    expect(rows.get_by_role("cell", name="200", exact=True)).to_be_visible()
    shot("webhooks-delivery-log")

    rows.get_by_role("link", name="payment.succeeded").click()
    page.get_by_role("button", name="Resend now").click()
    expect(page.get_by_text("will be sent again now")).to_be_visible()
    attempts = page.get_by_test_id("webhook-attempts")
    expect(attempts.get_by_text("resend")).to_be_visible()
    assert len(receiver.posts) == 2
    shot("webhooks-delivery-resent")

    # Disable, then delete after confirming.
    page.get_by_role("link", name=f"← {receiver_url(receiver)}").click()
    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_text("Endpoint disabled")).to_be_visible()
    page.get_by_role("link", name="Delete…").click()
    expect(page.get_by_role("heading", name="Delete this endpoint?")).to_be_visible()
    page.get_by_role("button", name="Delete endpoint").click()
    expect(page.get_by_text("No webhook endpoints yet.")).to_be_visible()
