"""The overview's payment charts: real payments through the services, a daily rollup, a rebuild command."""

from __future__ import annotations

import re
import time
from datetime import UTC
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from payments.models import Payment, PaymentDailyStat
from tests.payments.helpers import latest_payment, new_session, pay, post_stripe_event

pytestmark = pytest.mark.django_db


def paid(tenant, method: str = "pm_card_visa", **session) -> Payment:
    s = new_session(tenant, **session)
    pay(Client(), s, method)
    return latest_payment(s)


def open_dispute(payment: Payment, capture) -> None:
    now = int(time.time())
    obj = {
        "id": f"dp_sim_{payment.pk}",
        "object": "dispute",
        "amount": payment.amount,
        "currency": payment.currency.lower(),
        "reason": "fraudulent",
        "status": "needs_response",
        "payment_intent": payment.gateway_payment_id,
        "evidence_details": {"due_by": now + 7 * 86400},
    }
    with capture(execute=True):
        post_stripe_event(
            Client(), "charge.dispute.created", obj, event_id=f"evt_sim_d{payment.pk}", created=now
        )


def snapshot() -> set[tuple]:
    return set(
        PaymentDailyStat.objects.exclude(count=0).values_list(
            "merchant_id", "day", "currency", "outcome", "decline_code", "count", "amount"
        )
    )


def text_of(body: str, testid: str) -> str:
    match = re.search(rf'data-testid="{testid}">(.*?)</d', body, re.S)
    assert match, testid
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def test_the_overview_charts_the_payments_that_went_through(
    verified_client, tenant, outsider, django_capture_on_commit_callbacks
):
    eur = [paid(tenant) for _ in range(3)]
    declined = paid(tenant, "pm_card_chargeDeclinedInsufficientFunds")
    assert declined.status == Payment.Status.FAILED
    retried = paid(tenant, "pm_card_chargeDeclined")
    retried_session = retried.checkout_session
    pay(Client(), retried_session, "pm_card_visa")  # the customer tries another card: it succeeds
    retried.refresh_from_db()
    assert retried.status == Payment.Status.SUCCEEDED
    paid(tenant, amount=1000, currency="GBP")
    paid(outsider, amount=999_999)  # another merchant's: never counted here
    open_dispute(eur[0], django_capture_on_commit_callbacks)

    body = verified_client(tenant.owner).get("/").content.decode()
    assert text_of(body, "total-succeeded") == "5"
    assert text_of(body, "total-failed") == "1"
    assert text_of(body, "overall-rate") == "83.3%"
    assert text_of(body, "volume-by-currency") == "199.60 EUR (4) · 10.00 GBP (1)"
    assert text_of(body, "disputes-by-currency") == "1 for 49.90 EUR"
    assert "9,999.99" not in body
    # The charts are server-rendered SVG with their numbers as a table.
    assert body.count('<svg class="chart"') == 4
    assert "Daily volume (EUR), last 30 days" in body
    assert "<td>insufficient_funds</td><td>1</td>" in body
    assert "generic_decline" not in body  # that decline was followed by a success
    assert "<td>83.3%</td>" in body
    # Today's bar and its row in the table show the exact amount, formatted as money; the axis
    # runs to a round maximum in the same currency (its code is in the title).
    today = timezone.now().astimezone(UTC)
    label = f"{today.day} {today:%b}"
    assert f"<tr><td>{label}</td><td>199.60 EUR</td></tr>" in body
    assert f"<title>{label}: 199.60</title>" in body
    assert ">200.00</text>" in body and ">0.00</text>" in body


def test_the_rollup_kept_by_the_services_matches_a_rebuild_from_scratch(
    tenant, outsider, django_capture_on_commit_callbacks
):
    for method in ("pm_card_visa", "pm_card_chargeDeclinedExpiredCard", "pm_card_chargeDeclinedIncorrectCvc"):
        paid(tenant, method)
    p = paid(outsider, "pm_card_chargeDeclinedInsufficientFunds")
    pay(Client(), p.checkout_session, "pm_card_chargeDeclinedExpiredCard")  # declined again, another code
    three_ds = paid(tenant, "pm_card_threeDSecure2Required")  # waiting for the challenge: not counted yet
    assert three_ds.status == Payment.Status.REQUIRES_ACTION
    open_dispute(paid(tenant, amount=1234, currency="JPY"), django_capture_on_commit_callbacks)
    kept = snapshot()
    assert kept
    out = StringIO()
    call_command("rebuild_payment_stats", "--days", "2", stdout=out)
    assert "Rebuilt the payment statistics" in out.getvalue()
    assert snapshot() == kept
    # The rebuild also repairs a rollup that drifted.
    PaymentDailyStat.objects.all().delete()
    call_command("rebuild_payment_stats", "--merchant", tenant.merchant.public_id, stdout=StringIO())
    call_command("rebuild_payment_stats", "--merchant", outsider.merchant.public_id, stdout=StringIO())
    assert snapshot() == kept
    outsider_failed = PaymentDailyStat.objects.get(merchant=outsider.merchant, outcome="failed")
    assert (outsider_failed.decline_code, outsider_failed.count) == ("expired_card", 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-13-01"], "must be a date"),
        (["--from", "2026-11-10", "--to", "2026-11-01"], "on or before"),
        (["--merchant", "mer_nobody"], "No merchant"),
        (["--days", "0"], "at least 1"),
    ],
)
def test_the_rebuild_command_explains_bad_arguments(db, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("rebuild_payment_stats", *args, stdout=StringIO())


def test_a_new_merchant_sees_empty_charts_and_every_role_sees_them(verified_client, tenant):
    for user in (tenant.owner, tenant.teammate):
        body = verified_client(user).get("/").content.decode()
        assert 'data-testid="payments-overview"' in body
        assert "No successful payments yet." in body and "No declines." in body


def test_the_overview_costs_the_same_with_more_payments(
    verified_client, tenant, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = verified_client(tenant.owner)
    paid(tenant)
    with CaptureQueriesContext(connection) as ctx:
        assert client.get("/").status_code == 200
    small = len(ctx.captured_queries)
    for method in ("pm_card_visa", "pm_card_chargeDeclined", "pm_card_chargeDeclinedExpiredCard") * 3:
        paid(tenant, method)
    with django_assert_max_num_queries(small):
        client.get("/")
