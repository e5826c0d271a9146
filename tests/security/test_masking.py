"""Masking shows just enough; revealing a full value needs a permission and a reason, and is audited."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.template import Context, Template

from security.crypto import ERASED, Subject, shred
from security.errors import ApplicationError, PermissionDeniedError
from security.masking import mask_card, mask_email, mask_phone, mask_text
from security.models import AuditEvent
from security.services import pii_reveal
from tests.conftest import make_user
from tests.security.test_encrypted_fields import make_customer


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("4242 4242 4242 4242", "•••• 4242"),
        ("4000-0566-5566-5556", "•••• 5556"),
        (378282246310005, "•••• 0005"),
        ("12", "••••"),
        (None, ""),
        (ERASED, "[erased]"),
    ],
)
def test_card_numbers_show_only_the_last_four(value, masked) -> None:
    assert mask_card(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("jane.doe@example.com", "j•••@example.com"),
        ("  Z@sub.example.org ", "Z•••@sub.example.org"),
        ("not-an-email", "••••"),
        (ERASED, "[erased]"),
    ],
)
def test_emails_show_the_first_letter_and_the_domain(value, masked) -> None:
    assert mask_email(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("+44 7700 900789", "+44 •••• ••• 789"),
        ("07700 900789", "+44 •••• ••• 789"),
        ("+1 (415) 555-2671", "+1 •••• ••• 671"),
        ("+33 6 12 34 56 78", "+33 •••• •• 678"),
        (ERASED, "[erased]"),
    ],
)
def test_phones_show_the_country_code_and_the_last_three_digits(value, masked) -> None:
    assert mask_phone(value) == masked


def test_template_filters_mask_values() -> None:
    template = Template(
        "{% load masking %}{{ card|mask_card }}|{{ email|mask_email }}|{{ phone|mask_phone }}|{{ name|mask }}"
    )
    rendered = template.render(
        Context(
            {
                "card": "4242424242424242",
                "email": "jo@example.com",
                "phone": "+447700900789",
                "name": "Joanna",
            }
        )
    )
    assert rendered == "•••• 4242|j•••@example.com|+44 •••• ••• 789|J•••••"
    assert mask_text(ERASED) == "[erased]"


@pytest.mark.django_db
def test_revealing_needs_the_reveal_pii_permission() -> None:
    customer = make_customer(email="zoe@example.com")
    nosy = make_user("nosy@platform.example.com")
    with pytest.raises(PermissionDeniedError):
        pii_reveal(actor=nosy, instance=customer, field="email", reason="just curious, honestly")
    assert not AuditEvent.objects.filter(action="pii.viewed").exists()


@pytest.mark.django_db
def test_revealing_needs_a_reason_and_is_audited_with_who_what_and_why() -> None:
    customer = make_customer(email="zoe@example.com")
    officer = make_user("privacy@platform.example.com")
    officer.user_permissions.add(Permission.objects.get(codename="reveal_pii"))
    with pytest.raises(ApplicationError, match="Say why"):
        pii_reveal(actor=officer, instance=customer, field="email", reason="  ")
    value = pii_reveal(actor=officer, instance=customer, field="email", reason="DSR-42 access request export")
    assert value == "zoe@example.com"
    event = AuditEvent.objects.get(action="pii.viewed")
    assert event.actor_label == "privacy@platform.example.com"
    assert (event.target_type, event.target_id) == ("security_tests.customer", customer.public_id)
    assert event.details == {"field": "email", "reason": "DSR-42 access request export"}
    assert "zoe" not in str(event.details)
    with pytest.raises(ApplicationError, match="not a protected field"):
        pii_reveal(
            actor=officer, instance=customer, field="merchant_ref", reason="DSR-42 access request export"
        )


@pytest.mark.django_db
def test_revealing_an_erased_value_gives_the_erased_marker() -> None:
    customer = make_customer(email="zoe@example.com")
    shred(Subject("person", customer.public_id))
    officer = make_user("privacy@platform.example.com", is_superuser=True)
    customer.refresh_from_db()
    assert (
        pii_reveal(actor=officer, instance=customer, field="email", reason="DSR-43 erasure check") is ERASED
    )
