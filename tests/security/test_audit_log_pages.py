"""Staff with security.view_audit_log browse, filter, page through and export the audit log."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from security import audit
from security.models import AuditEvent
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def officer(db):
    user = make_user("officer@platform.example.com", full_name="Sam Officer")
    user.user_permissions.add(Permission.objects.get(codename="view_audit_log"))
    return user


@pytest.fixture
def officer_client(verified_client, officer):
    return verified_client(officer)


def seed(tenant) -> None:
    audit.record(
        actor=tenant.owner,
        action="payment.refunded",
        target=("payments.payment", "pay_1"),
        merchant=tenant.merchant,
    )
    audit.record(
        actor=tenant.teammate, action="auth.signed_in", target=tenant.teammate, merchant=tenant.merchant
    )
    audit.record(actor="system", action="crypto.rotation_started", target=("security.keyrotation", "1"))


def test_merchant_users_cannot_open_the_audit_log(verified_client, owner) -> None:
    client = verified_client(owner)
    assert client.get(reverse("audit_log")).status_code == 403
    assert client.get(reverse("audit_log_export")).status_code == 403


def test_officer_sees_events_newest_first(officer_client, tenant) -> None:
    seed(tenant)
    response = officer_client.get(reverse("audit_log"))
    assert response.status_code == 200
    page = response.context["page"]
    actions = [e.action for e in page.object_list]
    assert actions[0] == "crypto.rotation_started"
    assert "payment.refunded" in actions and b'data-testid="audit-table"' in response.content


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"action": "payment.refunded"}, {"payment.refunded"}),
        ({"action": "auth.signed*"}, {"auth.signed_in"}),
        ({"actor": "analyst@alpha"}, {"auth.signed_in"}),
        ({"target": "payments.payment:pay_1"}, {"payment.refunded"}),
        ({"target": "pay_1"}, {"payment.refunded"}),
    ],
)
def test_officer_filters_by_actor_action_and_target(officer_client, tenant, query, expected) -> None:
    seed(tenant)
    page = officer_client.get(reverse("audit_log"), query).context["page"]
    assert {e.action for e in page.object_list} == expected


def test_officer_filters_by_merchant_and_date_range(officer_client, tenant, outsider, monkeypatch) -> None:
    seed(tenant)
    audit.record(actor=outsider.owner, action="team.member_removed", merchant=outsider.merchant)
    page = officer_client.get(reverse("audit_log"), {"merchant": outsider.merchant.public_id}).context["page"]
    assert [e.action for e in page.object_list] == ["team.member_removed"]
    old = datetime.now(UTC) - timedelta(days=40)
    monkeypatch.setattr("django.utils.timezone.now", lambda: old)
    audit.record(actor="system", action="old.event")
    monkeypatch.undo()
    day = old.date().isoformat()
    page = officer_client.get(reverse("audit_log"), {"date_from": day, "date_to": day}).context["page"]
    assert [e.action for e in page.object_list] == ["old.event"]


def test_an_inverted_date_range_is_explained(officer_client) -> None:
    response = officer_client.get(reverse("audit_log"), {"date_from": "2025-02-01", "date_to": "2025-01-01"})
    assert response.status_code == 400
    assert b"start date must be on or before the end date" in response.content


def test_the_log_is_paginated(officer_client) -> None:
    for i in range(60):
        audit.record(actor="system", action="bulk.event", details={"i": i})
    first = officer_client.get(reverse("audit_log"), {"action": "bulk.event"}).context["page"]
    assert len(first.object_list) == 50 and first.has_next()
    response = officer_client.get(reverse("audit_log"), {"action": "bulk.event", "page": 2})
    assert len(response.context["page"].object_list) == 10
    assert b"action=bulk.event&amp;page=1" in response.content


def test_officer_exports_the_filtered_log_as_csv_and_the_export_is_audited(
    officer_client, officer, tenant
) -> None:
    seed(tenant)
    audit.record(
        actor="system", action="test.formula", details={"note": "=HYPERLINK(1)"}, target=("x", "=cmd")
    )
    response = officer_client.get(reverse("audit_log_export"), {"merchant": tenant.merchant.public_id})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert {r["action"] for r in rows} == {"payment.refunded", "auth.signed_in"}
    assert all(len(r["hash"]) == 64 for r in rows)
    exported = AuditEvent.objects.filter(action="audit.exported").get()
    assert exported.actor_label == officer.email
    assert exported.details["filters"] == {"merchant": tenant.merchant.public_id}
    everything = officer_client.get(reverse("audit_log_export"))
    text = b"".join(everything.streaming_content).decode()
    assert "'=cmd" in text and ",=cmd" not in text
