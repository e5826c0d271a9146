"""A payment's page lists its disputes with the same evidence countdown as the disputes page."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.payments.test_disputes_list import open_dispute

pytestmark = pytest.mark.django_db


def test_an_overdue_dispute_says_overdue_on_its_payment_page(
    verified_client, tenant, django_capture_on_commit_callbacks
):
    dispute = open_dispute(tenant, django_capture_on_commit_callbacks, due_in=timedelta(hours=-2))
    html = verified_client(tenant.owner).get(f"/payments/{dispute.payment.public_id}/").content.decode()
    assert dispute.public_id in html
    assert 'class="due-overdue">overdue</time>' in html
    assert "0 minutes" not in html
    assert "js/countdown.js" in html


def test_an_open_dispute_counts_down_to_its_evidence_deadline(
    verified_client, tenant, django_capture_on_commit_callbacks
):
    dispute = open_dispute(
        tenant, django_capture_on_commit_callbacks, due_in=timedelta(days=3, hours=4, minutes=1)
    )
    html = verified_client(tenant.owner).get(f"/payments/{dispute.payment.public_id}/").content.decode()
    assert 'class="due-later">3 days 4 hours left</time>' in html


def test_a_closed_dispute_shows_its_deadline_without_a_countdown(
    verified_client, tenant, django_capture_on_commit_callbacks
):
    dispute = open_dispute(tenant, django_capture_on_commit_callbacks, closed_as="won")
    html = verified_client(tenant.owner).get(f"/payments/{dispute.payment.public_id}/").content.decode()
    assert dispute.public_id in html
    assert "data-countdown" not in html and " left</time>" not in html
