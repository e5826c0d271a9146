"""Sign-in hardening: lockout, no account enumeration, sessions, sign-out everywhere, admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import EncryptedTOTPDevice
from accounts.roles import COMPLIANCE_ANALYST
from security.models import AuditEvent
from tests.conftest import PASSWORD, make_user, totp_code

pytestmark = pytest.mark.django_db


def attempt(client: Client, email: str, password: str):
    return client.post(
        reverse("account_login"), {"login": email, "password": password}, REMOTE_ADDR="203.0.113.7"
    )


def test_wrong_password_and_unknown_email_get_the_same_message(client, owner):
    wrong = attempt(client, owner.email, "not-the-password-at-all")
    unknown = attempt(client, "nobody@example.com", "not-the-password-at-all")
    assert wrong.status_code == unknown.status_code == 200
    wrong_errors = wrong.context["form"].non_field_errors()
    unknown_errors = unknown.context["form"].non_field_errors()
    assert list(wrong_errors) == list(unknown_errors) and wrong_errors


def test_repeated_failures_lock_the_account_and_ip_with_a_clear_message_and_audit(client, owner, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, owner.email, "wrong-password-guess")
    locked = attempt(client, owner.email, PASSWORD)  # even the right password is refused now
    assert locked.status_code == 429
    assert b"Too many failed attempts" in locked.content
    assert AccessAttempt.objects.filter(username=owner.email, ip_address="203.0.113.7").exists()
    assert AuditEvent.objects.filter(action="auth.locked_out", target_id=owner.public_id).exists()
    assert AuditEvent.objects.filter(action="auth.sign_in_failed").count() >= settings.AXES_FAILURE_LIMIT
    # The lock is for this account from this address; another address may still try.
    other = client.post(
        reverse("account_login"), {"login": owner.email, "password": PASSWORD}, REMOTE_ADDR="198.51.100.9"
    )
    assert other.status_code == 302


def test_failure_audit_never_contains_the_attempted_email(client):
    attempt(client, "someone.private@example.com", "wrong-password-guess")
    event = AuditEvent.objects.get(action="auth.sign_in_failed")
    assert "someone.private" not in str(event.details) and "someone.private" not in event.actor_label


def test_password_validators_require_twelve_characters_and_refuse_common_ones():
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    for bad in ("Sh0rt!pass", "password1234", "qwertyuiop123", "123456789012"):
        with pytest.raises(ValidationError):
            validate_password(bad)
    validate_password("tangerine-velvet-orbit-42")


def test_staff_sessions_expire_after_thirty_idle_minutes(client, settings):
    staff = make_user("analyst@platform.example.com")
    staff.groups.add(Group.objects.get(name=COMPLIANCE_ANALYST))
    attempt(client, staff.email, PASSWORD)
    device = EncryptedTOTPDevice.objects.get(user=staff)
    client.post(reverse("two_factor_verify"), {"code": totp_code(device)}, REMOTE_ADDR="203.0.113.7")
    assert client.get(reverse("home")).status_code == 200
    session = Session.objects.get(session_key=client.session.session_key)
    remaining = session.expire_date - timezone.now()
    assert timedelta(minutes=29) < remaining <= timedelta(minutes=30)
    # Thirty minutes of silence later, the session is gone.
    Session.objects.filter(pk=session.pk).update(expire_date=timezone.now() - timedelta(seconds=1))
    response = client.get(reverse("home"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("account_login"))


def test_merchant_sessions_are_not_cut_to_thirty_minutes(verified_client, owner):
    client = verified_client(owner)
    client.get(reverse("home"))
    session = Session.objects.get(session_key=client.session.session_key)
    assert session.expire_date - timezone.now() > timedelta(hours=1)


def test_sign_out_everywhere_ends_every_session(verified_client, owner):
    laptop = verified_client(owner)
    phone = verified_client(owner)
    assert phone.get(reverse("home")).status_code == 200
    response = laptop.post(reverse("sign_out_everywhere"))
    assert response.status_code == 302 and response["Location"] == reverse("account_login")
    assert phone.get(reverse("home")).status_code == 302
    assert laptop.get(reverse("home")).status_code == 302
    assert AuditEvent.objects.filter(action="auth.signed_out_everywhere").exists()


def test_admin_never_opens_with_a_password_alone(client, password_only_client, verified_client):
    admin = make_user("root@platform.example.com", is_staff=True, is_superuser=True)
    anonymous = client.get(reverse("admin:index"))
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("account_login"))
    partial = password_only_client(admin).get(reverse("admin:index"))
    assert partial.status_code == 302 and partial["Location"].startswith(reverse("two_factor_verify"))
    # The admin's own login page does not accept a password either: it sends people to our two steps.
    login_page = client.get(reverse("admin:login"))
    assert login_page.status_code == 302 and login_page["Location"].startswith(reverse("account_login"))
    assert verified_client(admin).get(reverse("admin:index")).status_code == 200


def test_verified_merchant_user_without_admin_flag_cannot_open_admin(verified_client, owner):
    response = verified_client(owner).get(reverse("admin:index"), follow=True)
    assert response.status_code == 403
    assert len(response.redirect_chain) == 1
