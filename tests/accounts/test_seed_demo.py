"""`seed_demo`: known people for every role, idempotent, DEBUG only."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django_otp.oath import TOTP

from accounts.models import Membership, Merchant, User

pytestmark = pytest.mark.django_db


def seed(settings, *args: str) -> str:
    settings.DEBUG = True
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def test_refuses_to_run_with_debug_off(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG off"):
        call_command("seed_demo")
    assert not User.objects.exists()


def test_json_lists_every_role_with_password_and_totp_secret(settings):
    people = json.loads(seed(settings, "--json"))
    roles = {p["role"] for p in people}
    assert roles == {
        "owner",
        "analyst",
        "compliance_analyst",
        "compliance_supervisor",
        "privacy_officer",
        "security_officer",
        "superuser",
    }
    for person in people:
        assert set(person) == {"email", "password", "role", "totp_secret"}
    merchant = Merchant.objects.get()
    assert {m.role for m in Membership.objects.filter(merchant=merchant)} == {"owner", "analyst"}
    assert User.objects.get(email=next(p["email"] for p in people if p["role"] == "superuser")).is_superuser


def test_running_twice_changes_nothing(settings):
    first = json.loads(seed(settings, "--json"))
    second = json.loads(seed(settings, "--json"))
    assert first == second
    assert User.objects.count() == len(first)
    assert Merchant.objects.count() == 1


def test_seeded_owner_signs_in_with_password_and_the_published_secret(settings, client):
    import base64
    import time

    people = json.loads(seed(settings, "--json"))
    owner = next(p for p in people if p["role"] == "owner")
    client.post(reverse("account_login"), {"login": owner["email"], "password": owner["password"]})
    secret = owner["totp_secret"] + "=" * (-len(owner["totp_secret"]) % 8)
    totp = TOTP(base64.b32decode(secret))
    totp.time = time.time()
    response = client.post(reverse("two_factor_verify"), {"code": f"{totp.token():06d}"})
    assert response.status_code == 302
    page = client.get(reverse("home"))
    assert page.status_code == 200 and b"Demo Shop" in page.content
