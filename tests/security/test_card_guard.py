"""Requests carrying a card number are refused with 400 before any view runs, and audited."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from security.models import AuditEvent
from security.pan import contains_card_number, luhn_ok

pytestmark = pytest.mark.django_db

CARDS = [
    "4242424242424242",
    "4242 4242 4242 4242",
    "4000-0566-5566-5556",
    "5555555555554444",
    "2223003122003222",
    "378282246310005",
    "3782 822463 10005",
    "6011111111111117",
    "3530111333300000",
    "36227206271667",
    "6200000000000005",
    "4222222222222",
    "4000000000000000006",
]


@pytest.mark.parametrize("card", CARDS)
def test_card_in_a_query_string_is_refused_and_audited_without_the_number(client, card) -> None:
    response = client.get("/accounts/login/", {"q": f"my card is {card} thanks"})
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert b"card number" in response.content
    event = AuditEvent.objects.get(action="security.card_number_refused")
    assert event.details == {"method": "GET", "path": "/accounts/login/", "where": "query", "field": "q"}
    assert card.replace(" ", "").replace("-", "")[-8:] not in json.dumps(event.details)


def test_card_in_a_form_field_is_refused_before_the_view_and_before_csrf(client, owner) -> None:
    response = client.post(
        reverse("account_login"), {"login": owner.email, "password": "4242 4242 4242 4242"}
    )
    assert response.status_code == 400
    assert not AuditEvent.objects.filter(action__startswith="auth.").exists()  # the sign-in view never ran
    event = AuditEvent.objects.get(action="security.card_number_refused")
    assert (event.details["where"], event.details["field"]) == ("form", "password")


def test_card_in_a_json_body_is_refused_and_the_sender_is_named(verified_client, owner) -> None:
    client = verified_client(owner)
    payload = {"order": {"notes": ["deliver to door", {"pan": 4111111111111111}]}, "amount": 1999}
    response = client.post("/api/v1/me/", data=json.dumps(payload), content_type="application/json")
    assert response.status_code == 400
    event = AuditEvent.objects.get(action="security.card_number_refused")
    assert event.details["where"] == "json" and event.details["field"] == "$.order.notes[1].pan"
    assert event.actor_label == owner.email


def test_card_in_the_path_is_refused_and_not_recorded(client) -> None:
    response = client.get("/payments/lookup/4242-4242-4242-4242/")
    assert response.status_code == 400
    event = AuditEvent.objects.get(action="security.card_number_refused")
    assert event.details["where"] == "path" and "4242" not in event.details["path"]


def test_card_in_a_plain_text_body_is_refused(client) -> None:
    response = client.post("/webhooks/anything/", data="pan: 5555 5555 5555 4444", content_type="text/plain")
    assert response.status_code == 400


@pytest.mark.parametrize(
    "value",
    [
        "123456",  # TOTP code
        "k7m2-p9x4qr",  # backup code
        "abcd2345ef",
        "pay_3kT9aZ4242424242424242Qx",  # digits glued inside a public id
        "1999",  # amount in minor units
        "19.99",
        "1,234,567.89",
        "1732867200",  # Unix seconds
        "1732867200123",  # Unix milliseconds (Luhn-valid, but no card starts with 1)
        "1732867200123456",  # microseconds
        "2025-05-01T12:00:00Z",
        "2025-05-01 2025-05-02",
        "+44 7700 900789",
        "+1 415 555 2671",
        "4242424242424241",  # fails Luhn
        "424242424242",  # 12 digits
        "42424242424242424242",  # 20 digits
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # a SHA-256
    ],
)
def test_ordinary_values_pass(client, value) -> None:
    assert not contains_card_number(value, strict=True), value
    response = client.get("/accounts/login/", {"code": value, "next": "/team/?page=2"})
    assert response.status_code == 200
    assert not AuditEvent.objects.filter(action="security.card_number_refused").exists()


def test_a_signed_in_form_with_totp_code_passes(verified_client, owner) -> None:
    client = verified_client(owner)
    response = client.post(reverse("team"), {"email": "new.person@example.com", "role": "analyst"})
    assert response.status_code in (200, 302)
    assert not AuditEvent.objects.filter(action="security.card_number_refused").exists()


def test_luhn_check() -> None:
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
