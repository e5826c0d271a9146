"""Gateway secrets older than 90 days raise an admin warning and a daily email until they change."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from payments.key_hygiene import gateway_secrets_record_sightings, gateway_secrets_remind, stale_secrets
from payments.models import GatewaySecretSighting
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def fake_secret(tag: str) -> str:
    return "sk_test_" + tag * 6  # built at run time; not a real key


@pytest.fixture
def admin_user():
    return make_user("root@platform.example.com", is_staff=True, is_superuser=True)


def test_only_a_fingerprint_is_stored(settings):
    settings.STRIPE_SECRET_KEY = fake_secret("a")
    gateway_secrets_record_sightings()
    sighting = GatewaySecretSighting.objects.get()
    assert settings.STRIPE_SECRET_KEY not in sighting.fingerprint
    assert sighting.label == "STRIPE_SECRET_KEY" and sighting.gateway == "stripe"


def test_keys_older_than_90_days_email_admins_daily_until_rotated(
    settings, admin_user, django_capture_on_commit_callbacks
):
    settings.STRIPE_SECRET_KEY = fake_secret("a")
    t0 = timezone.now()
    gateway_secrets_record_sightings(now=t0)
    with django_capture_on_commit_callbacks(execute=True):
        assert gateway_secrets_remind(now=t0 + timedelta(days=89)) == 0
    assert mail.outbox == []

    day91 = t0 + timedelta(days=91)
    with django_capture_on_commit_callbacks(execute=True):
        gateway_secrets_remind(now=day91)
        gateway_secrets_remind(now=day91 + timedelta(hours=2))  # same day: no second email
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [admin_user.email]
    assert "STRIPE_SECRET_KEY (stripe) has been in use for 91 days" in mail.outbox[0].body
    assert settings.STRIPE_SECRET_KEY not in mail.outbox[0].body

    with django_capture_on_commit_callbacks(execute=True):
        gateway_secrets_remind(now=day91 + timedelta(days=1))
    assert len(mail.outbox) == 2

    # Rotated: the new key is fresh, the old one retired, the reminders stop.
    settings.STRIPE_SECRET_KEY = fake_secret("b")
    with django_capture_on_commit_callbacks(execute=True):
        gateway_secrets_remind(now=day91 + timedelta(days=2))
    assert len(mail.outbox) == 2
    assert stale_secrets(now=day91 + timedelta(days=2)) == []
    assert GatewaySecretSighting.objects.filter(retired_at__isnull=False).count() == 1


def test_admin_pages_show_the_rotation_warning(settings, admin_user, verified_client):
    settings.STRIPE_SECRET_KEY = fake_secret("c")
    gateway_secrets_record_sightings(now=timezone.now() - timedelta(days=120))
    client = verified_client(admin_user)
    admin_index = client.get(reverse("admin:index")).content.decode()
    assert "Rotate gateway key:" in admin_index and "120 days" in admin_index
    home = client.get(reverse("home")).content.decode()
    assert 'data-testid="platform-notice"' in home and "120 days" in home


def test_no_warning_for_fresh_keys(settings, admin_user, verified_client):
    settings.STRIPE_SECRET_KEY = fake_secret("d")
    gateway_secrets_record_sightings()
    assert (
        "Rotate gateway key" not in verified_client(admin_user).get(reverse("admin:index")).content.decode()
    )
