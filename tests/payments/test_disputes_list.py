"""The disputes page: open disputes first with a countdown to the evidence deadline, then the history."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from payments.countdown import countdown
from payments.models import Dispute
from tests.payments.helpers import latest_payment, new_session, pay, post_stripe_event

pytestmark = pytest.mark.django_db

PAGE = "/payments/disputes/"
_seq = iter(range(1, 10_000))


def open_dispute(
    tenant,
    capture,
    *,
    due_in: timedelta | None = timedelta(days=7),
    closed_as: str | None = None,
    amount: int = 2500,
    reason: str = "fraudulent",
) -> Dispute:
    """A paid payment, then the gateway's signed dispute webhooks (closed as won/lost when asked)."""
    client = Client()
    session = new_session(tenant, amount=amount)
    pay(client, session, "pm_card_visa")
    payment = latest_payment(session)
    n = next(_seq)
    now = int(time.time())
    obj = {
        "id": f"dp_sim_{n}",
        "object": "dispute",
        "amount": amount,
        "currency": "eur",
        "reason": reason,
        "status": "needs_response",
        "payment_intent": payment.gateway_payment_id,
        "evidence_details": {"due_by": now + int(due_in.total_seconds()) if due_in is not None else None},
    }
    with capture(execute=True):
        post_stripe_event(client, "charge.dispute.created", obj, event_id=f"evt_sim_dc{n}", created=now)
        if closed_as:
            post_stripe_event(
                client,
                "charge.dispute.closed",
                obj | {"status": closed_as},
                event_id=f"evt_sim_dx{n}",
                created=now + 1,
            )
    return Dispute.objects.get(gateway_dispute_id=f"dp_sim_{n}")


@pytest.mark.parametrize(
    ("left", "text", "css"),
    [
        (timedelta(days=3, hours=4, seconds=20), "3 days 4 hours left", "due-later"),
        (timedelta(days=2, seconds=5), "2 days left", "due-later"),
        (timedelta(days=1, hours=23, minutes=59), "1 day 23 hours left", "due-urgent"),
        (timedelta(hours=5, minutes=1), "5 hours 1 minute left", "due-urgent"),
        (timedelta(hours=1), "1 hour left", "due-urgent"),
        (timedelta(minutes=12, seconds=30), "12 minutes left", "due-urgent"),
        (timedelta(seconds=30), "less than a minute left", "due-urgent"),
        (timedelta(0), "overdue", "due-overdue"),
        (timedelta(days=-3), "overdue", "due-overdue"),
    ],
)
def test_the_countdown_says_how_long_is_left_in_words(left, text, css):
    now = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
    result = countdown(now + left, now)
    assert result is not None and (result.text, result.css) == (text, css)


def test_no_deadline_means_no_countdown():
    assert countdown(None, datetime(2031, 3, 1, tzinfo=UTC)) is None


def test_open_disputes_come_first_nearest_deadline_first_then_the_history(
    verified_client, tenant, django_capture_on_commit_callbacks
):
    cap = django_capture_on_commit_callbacks
    later = open_dispute(tenant, cap, due_in=timedelta(days=3, hours=4, minutes=1), amount=1000)
    soon = open_dispute(tenant, cap, due_in=timedelta(hours=30, minutes=1), amount=2000)
    past = open_dispute(tenant, cap, due_in=timedelta(hours=-2), amount=400)
    unknown = open_dispute(tenant, cap, due_in=None, amount=100)
    won = open_dispute(tenant, cap, closed_as="won", amount=700)
    lost = open_dispute(tenant, cap, closed_as="lost", amount=800)
    page = verified_client(tenant.owner).get(PAGE)
    html = page.content.decode()
    assert page.status_code == 200
    open_part, history = html.split("<h2>History</h2>")
    order = [open_part.index(d.public_id) for d in (past, soon, later, unknown)]
    assert order == sorted(order)
    assert won.public_id in history and lost.public_id in history
    assert won.public_id not in open_part
    assert 'class="due-later">3 days 4 hours left</time>' in html
    assert 'class="due-urgent">1 day 6 hours left</time>' in html
    assert 'class="due-overdue">overdue</time>' in html
    assert "no deadline given" in html
    assert "At risk: <strong>35.00 EUR</strong>" in html  # 10 + 20 + 4 + 1, not the closed ones
    assert "js/countdown.js" in html
    assert f'href="/payments/{soon.payment.public_id}/"' in html


@pytest.mark.parametrize(
    ("status", "shown", "hidden"),
    [
        ("won", ["won"], ["open", "lost"]),
        ("lost", ["lost"], ["open", "won"]),
        ("history", ["won", "lost"], ["open"]),
        ("open", ["open"], ["won", "lost"]),
        ("needs_response", ["open"], ["won", "lost"]),
        ("under_review", [], ["open", "won", "lost"]),
        ("no-such-status", ["open", "won", "lost"], []),
    ],
)
def test_filtering_by_status(
    verified_client, tenant, django_capture_on_commit_callbacks, status, shown, hidden
):
    cap = django_capture_on_commit_callbacks
    disputes = {
        "open": open_dispute(tenant, cap),
        "won": open_dispute(tenant, cap, closed_as="won"),
        "lost": open_dispute(tenant, cap, closed_as="lost"),
    }
    html = verified_client(tenant.owner).get(PAGE, {"status": status}).content.decode()
    for name in shown:
        assert disputes[name].public_id in html, name
    for name in hidden:
        assert disputes[name].public_id not in html, name


def test_every_team_member_sees_disputes_but_not_another_merchants(
    verified_client, tenant, outsider, django_capture_on_commit_callbacks
):
    dispute = open_dispute(tenant, django_capture_on_commit_callbacks)
    assert dispute.public_id in verified_client(tenant.teammate).get(PAGE).content.decode()
    outsider_page = verified_client(outsider.owner).get(PAGE)
    assert outsider_page.status_code == 200
    assert dispute.public_id not in outsider_page.content.decode()
    assert "No open disputes" in outsider_page.content.decode()


def test_the_disputes_page_makes_the_same_number_of_queries_however_many_disputes(
    verified_client, tenant, django_capture_on_commit_callbacks
):
    cap = django_capture_on_commit_callbacks
    open_dispute(tenant, cap)
    open_dispute(tenant, cap, closed_as="won")
    client = verified_client(tenant.owner)
    client.get(PAGE)

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(PAGE).status_code == 200
        return len(ctx.captured_queries)

    small = count()
    for i in range(6):
        open_dispute(tenant, cap, due_in=timedelta(days=i + 1))
        open_dispute(tenant, cap, closed_as="lost" if i % 2 else "won")
    assert count() == small
