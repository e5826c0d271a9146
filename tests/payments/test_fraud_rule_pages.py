"""The fraud rules pages: owners and admins add, edit, disable and delete rules; every change is audited."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Membership, Role
from payments.models import FraudRule
from security.models import AuditEvent
from tests.conftest import make_user
from tests.payments.fraud_helpers import add_rule

pytestmark = pytest.mark.django_db

LIST = "/payments/fraud-rules/"


def rule_audits() -> list[str]:
    return list(
        AuditEvent.objects.filter(action__startswith="fraud_rule.")
        .order_by("pk")
        .values_list("action", flat=True)
    )


def test_an_owner_adds_a_velocity_rule_and_the_change_is_audited(verified_client, tenant):
    client = verified_client(tenant.owner)
    page = client.get(LIST).content.decode()
    assert "No fraud rules yet" in page and "/payments/fraud-rules/new/velocity/" in page
    form = client.get("/payments/fraud-rules/new/velocity/")
    assert form.status_code == 200 and "Window (minutes)" in form.content.decode()
    response = client.post(
        "/payments/fraud-rules/new/velocity/",
        {
            "label": "Card testing",
            "dimension": "ip",
            "measure": "count",
            "limit": "5",
            "window_minutes": "10",
            "action": "block",
            "enabled": "on",
        },
    )
    assert response.status_code == 302 and response["Location"] == LIST
    rule = FraudRule.objects.get()
    assert (rule.merchant, rule.kind, rule.action, rule.enabled, rule.created_by) == (
        tenant.merchant,
        "velocity",
        "block",
        True,
        tenant.owner,
    )
    assert rule.parameters == {"dimension": "ip", "measure": "count", "limit": 5, "window_minutes": 10}
    audit = AuditEvent.objects.get(action="fraud_rule.created")
    assert audit.target_id == rule.public_id and audit.merchant_id == str(tenant.merchant.public_id)
    assert audit.details["summary"] == "More than 5 payments per IP address in 10 minutes"
    listing = client.get(LIST).content.decode()
    assert "Card testing" in listing and "More than 5 payments per IP address in 10 minutes" in listing


def test_amounts_are_typed_in_major_units_and_shown_back_the_same_way(verified_client, tenant):
    client = verified_client(tenant.owner)
    client.post(
        "/payments/fraud-rules/new/max_amount/",
        {"label": "Big orders", "currency": "jpy", "amount": "50000", "action": "review", "enabled": "on"},
    )
    rule = FraudRule.objects.get()
    assert rule.parameters == {"currency": "JPY", "amount": 50000}
    client.post(
        "/payments/fraud-rules/new/velocity/",
        {
            "label": "Spend",
            "dimension": "email",
            "measure": "sum",
            "limit": "1000.50",
            "currency": "EUR",
            "window_minutes": "1440",
            "action": "review",
        },
    )
    spend = FraudRule.objects.get(label="Spend")
    assert spend.parameters["limit"] == 100050 and spend.enabled is False
    edit = client.get(f"/payments/fraud-rules/{spend.public_id}/").content.decode()
    assert 'value="1000.50"' in edit
    assert "More than 1,000.50 EUR per customer email in 1 day" in client.get(LIST).content.decode()


BAD_INPUT = [
    ("max_amount", {"currency": "EUR", "amount": "abc"}, "amount"),
    ("max_amount", {"currency": "XYZ", "amount": "10"}, "currency"),
    ("max_amount", {"currency": "EUR", "amount": "0"}, "more than zero"),
    (
        "velocity",
        {"dimension": "ip", "measure": "count", "limit": "2.5", "window_minutes": "60"},
        "whole number",
    ),
    (
        "velocity",
        {"dimension": "ip", "measure": "sum", "limit": "10", "window_minutes": "60"},
        "which currency",
    ),
    (
        "velocity",
        {"dimension": "ip", "measure": "count", "limit": "3", "window_minutes": "0"},
        "greater than",
    ),
    (
        "velocity",
        {"dimension": "ip", "measure": "count", "limit": "3", "window_minutes": "99999"},
        "less than",
    ),
    (
        "velocity",
        {"dimension": "moon", "measure": "count", "limit": "3", "window_minutes": "5"},
        "valid choice",
    ),
    ("block_ip", {"entries": "198.51.100.7\n300.1.1.1"}, "300.1.1.1” is not an IP address"),
    ("block_ip", {"entries": "0.0.0.0/0"}, "too wide to block"),
    ("block_bin", {"entries": "4242"}, "is not a BIN"),
    ("block_card", {"entries": "x"}, "is not a card fingerprint"),
    ("block_email", {"entries": "not-an-email"}, "is not a valid email address"),
    ("block_email", {"entries": ""}, "Add at least one entry"),
    ("max_amount", {"currency": "EUR", "amount": "10", "label": ""}, "This field is required"),
    ("risk_level", {"min_level": "catastrophic"}, "valid choice"),
]


@pytest.mark.parametrize(("kind", "data", "message"), BAD_INPUT)
def test_bad_input_gets_a_clear_error_and_saves_nothing(verified_client, tenant, kind, data, message):
    client = verified_client(tenant.owner)
    response = client.post(
        f"/payments/fraud-rules/new/{kind}/", {"label": "A rule", "action": "block", "enabled": "on", **data}
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not FraudRule.objects.exists() and rule_audits() == []


def test_bad_parameters_from_code_are_refused_too(tenant):
    from payments import fraud_rules

    for kind, params in [
        ("max_amount", {"currency": "EUR", "amount": 10, "extra": 1}),
        ("max_amount", {"currency": "EUR", "amount": True}),
        (
            "velocity",
            {"dimension": "ip", "measure": "count", "limit": 3, "currency": "EUR", "window_minutes": 5},
        ),
        ("country_mismatch", {"strict": True}),
        ("block_email", {"entries": [{"bidx": "not-hex", "hint": "x"}]}),
        ("block_bin", {"entries": ["1"] * 1001}),
        ("nonsense", {}),
        ("block_ip", "203.0.113.0/24"),
    ]:
        with pytest.raises(fraud_rules.RuleInvalid):
            add_rule(tenant, kind, "block", **params) if isinstance(
                params, dict
            ) else fraud_rules.fraud_rule_create(
                actor=tenant.owner,
                merchant=tenant.merchant,
                kind=kind,
                parameters=params,
                action="block",
                label="x",
            )
    with pytest.raises(fraud_rules.RuleInvalid):
        add_rule(tenant, "country_mismatch", "allow-everything")
    assert not FraudRule.objects.exists() and rule_audits() == []


def test_editing_a_rule_records_what_changed(verified_client, tenant):
    rule = add_rule(tenant, "block_ip", "review", label="Bad ranges", entries=["203.0.113.0/24"])
    client = verified_client(tenant.owner)
    page = client.get(f"/payments/fraud-rules/{rule.public_id}/").content.decode()
    assert "203.0.113.0/24" in page and "Save rule" in page
    response = client.post(
        f"/payments/fraud-rules/{rule.public_id}/",
        {"label": "Bad ranges", "entries": "203.0.113.0/24\n198.51.100.7\n2001:db8::/48", "action": "block"},
    )
    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.parameters == {"entries": ["203.0.113.0/24", "198.51.100.7/32", "2001:db8::/48"]}
    assert rule.action == "block" and rule.enabled is False
    audit = AuditEvent.objects.get(action="fraud_rule.updated")
    assert sorted(audit.details["changed"]) == ["action", "enabled", "parameters"]
    assert audit.details["summary_before"] == "1 IP range on the list"
    assert audit.details["summary"] == "3 IP ranges on the list"
    # Saving the same values again is not a change.
    client.post(
        f"/payments/fraud-rules/{rule.public_id}/",
        {
            "label": "Bad ranges",
            "entries": "203.0.113.0/24\n198.51.100.7/32\n2001:db8::/48",
            "action": "block",
        },
    )
    assert rule_audits().count("fraud_rule.updated") == 1


def test_an_email_block_list_keeps_digests_and_masked_hints_only(verified_client, tenant):
    client = verified_client(tenant.owner)
    client.post(
        "/payments/fraud-rules/new/block_email/",
        {"label": "Chargeback makers", "entries": "Jane.Doe@Example.com\nmax@example.org", "action": "block"},
    )
    rule = FraudRule.objects.get()
    stored = json.dumps(rule.parameters) + json.dumps(
        list(AuditEvent.objects.values_list("details", flat=True))
    )
    assert "jane.doe" not in stored.lower() and "max@example.org" not in stored
    assert [e["hint"] for e in rule.parameters["entries"]] == ["J•••@Example.com", "m•••@example.org"]
    edit = client.get(f"/payments/fraud-rules/{rule.public_id}/").content.decode()
    assert "J•••@Example.com" in edit and "Remove from the list" in edit
    jane = rule.parameters["entries"][0]["bidx"]
    client.post(
        f"/payments/fraud-rules/{rule.public_id}/",
        {"label": "Chargeback makers", "remove": [jane], "entries": "new@example.net", "action": "block"},
    )
    rule.refresh_from_db()
    assert [e["hint"] for e in rule.parameters["entries"]] == ["m•••@example.org", "n•••@example.net"]


def test_disabling_enabling_and_deleting_with_confirmation(verified_client, tenant):
    rule = add_rule(tenant, "risk_level", "review", label="Radar says so", min_level="highest")
    client = verified_client(tenant.owner)
    client.post(f"/payments/fraud-rules/{rule.public_id}/toggle/", {"enabled": "0"})
    rule.refresh_from_db()
    assert rule.enabled is False
    assert "Enable" in client.get(LIST).content.decode()
    client.post(f"/payments/fraud-rules/{rule.public_id}/toggle/", {"enabled": "1"})
    rule.refresh_from_db()
    assert rule.enabled is True
    confirm = client.get(f"/payments/fraud-rules/{rule.public_id}/delete/")
    assert confirm.status_code == 200 and "Delete “Radar says so”?" in confirm.content.decode()
    assert FraudRule.objects.filter(pk=rule.pk).exists()  # looking is not deleting
    assert client.post(f"/payments/fraud-rules/{rule.public_id}/delete/").status_code == 302
    assert not FraudRule.objects.filter(pk=rule.pk).exists()
    assert rule_audits() == [
        "fraud_rule.created",
        "fraud_rule.disabled",
        "fraud_rule.enabled",
        "fraud_rule.deleted",
    ]
    assert client.get(f"/payments/fraud-rules/{rule.public_id}/delete/").status_code == 404


def test_only_owners_and_admins_manage_rules(verified_client, tenant):
    rule = add_rule(tenant, "country_mismatch", "review")
    analyst = verified_client(tenant.teammate)
    for url in (
        LIST,
        "/payments/fraud-rules/new/velocity/",
        f"/payments/fraud-rules/{rule.public_id}/",
        f"/payments/fraud-rules/{rule.public_id}/delete/",
    ):
        assert analyst.get(url).status_code == 403, url
    assert (
        analyst.post(f"/payments/fraud-rules/{rule.public_id}/toggle/", {"enabled": "0"}).status_code == 403
    )
    assert analyst.post(f"/payments/fraud-rules/{rule.public_id}/delete/").status_code == 403
    admin = make_user("admin@alpha.example.com")
    Membership.objects.create(user=admin, merchant=tenant.merchant, role=Role.ADMIN)
    assert verified_client(admin).get(LIST).status_code == 200
    assert FraudRule.objects.get(pk=rule.pk).enabled is True


def test_another_merchants_rules_are_not_found(verified_client, tenant, outsider):
    rule = add_rule(tenant, "max_amount", "block", label="Alpha's secret rule", currency="EUR", amount=100)
    client = verified_client(outsider.owner)
    assert "Alpha&#x27;s secret rule" not in client.get(LIST).content.decode()
    assert client.get(f"/payments/fraud-rules/{rule.public_id}/").status_code == 404
    assert client.post(f"/payments/fraud-rules/{rule.public_id}/", {"label": "mine"}).status_code == 404
    assert client.post(f"/payments/fraud-rules/{rule.public_id}/toggle/", {"enabled": "0"}).status_code == 404
    assert client.post(f"/payments/fraud-rules/{rule.public_id}/delete/").status_code == 404
    rule.refresh_from_db()
    assert rule.enabled and rule.label == "Alpha's secret rule"


def test_an_unknown_kind_is_not_found(verified_client, tenant):
    assert verified_client(tenant.owner).get("/payments/fraud-rules/new/astrology/").status_code == 404


def test_the_rules_list_makes_the_same_number_of_queries_however_many_rules(verified_client, tenant):
    client = verified_client(tenant.owner)
    add_rule(tenant, "country_mismatch", "review")
    client.get(LIST)

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(LIST).status_code == 200
        return len(ctx.captured_queries)

    small = count()
    for i in range(15):
        add_rule(tenant, "max_amount", "review", label=f"Limit {i}", currency="EUR", amount=1000 + i)
        add_rule(tenant, "block_bin", "block", label=f"BINs {i}", entries=[f"{400000 + i}"])
    assert count() == small


def test_navigation_shows_the_fraud_pages_by_role(verified_client, tenant):
    owner_page = verified_client(tenant.owner).get(LIST).content.decode()
    for label in ("Review queue", "Disputes", "Fraud rules"):
        assert f">{label}</a>" in owner_page
    analyst_page = verified_client(tenant.teammate).get("/payments/disputes/").content.decode()
    assert ">Disputes</a>" in analyst_page
    assert ">Review queue</a>" not in analyst_page and ">Fraud rules</a>" not in analyst_page


def test_an_empty_form_or_a_garbled_toggle_changes_nothing(verified_client, tenant):
    rule = add_rule(tenant, "country_mismatch", "review")
    client = verified_client(tenant.owner)
    empty = client.post("/payments/fraud-rules/new/max_amount/", {})
    assert empty.status_code == 400 and "This field is required" in empty.content.decode()
    response = client.post(f"/payments/fraud-rules/{rule.public_id}/toggle/", {"enabled": "maybe"})
    assert (
        "Say whether the rule should be enabled or disabled."
        in client.get(response["Location"]).content.decode()
    )
    rule.refresh_from_db()
    assert rule.enabled is True and rule_audits() == ["fraud_rule.created"]
    assert FraudRule.objects.count() == 1
