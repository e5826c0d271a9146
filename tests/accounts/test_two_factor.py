"""Second factor: enrolment, sign-in codes, backup codes, throttling, re-enrolment, step-up."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import BackupCode, BackupCodeDevice, EncryptedTOTPDevice
from security.models import AuditEvent
from tests.conftest import PASSWORD, make_user, totp_code

pytestmark = pytest.mark.django_db


def sign_in_with_password(client, email: str, password: str = PASSWORD, next_url: str = ""):
    url = reverse("account_login") + (f"?next={next_url}" if next_url else "")
    return client.post(url, {"login": email, "password": password})


def enrol(client) -> tuple[EncryptedTOTPDevice, list[str]]:
    page = client.get(reverse("two_factor_enrol"))
    assert page.status_code == 200
    secret = re.search(r'data-secret="([A-Z2-7]+)"', page.content.decode()).group(1)
    from accounts.services import totp_secret_base32

    device = EncryptedTOTPDevice.objects.get(user__email=page.context["user"].email, confirmed=False)
    assert totp_secret_base32(device) == secret
    response = client.post(reverse("two_factor_enrol"), {"code": totp_code(device)}, follow=True)
    codes = re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", response.content.decode())
    return device, codes


def test_first_sign_in_requires_enrolment_and_shows_a_server_rendered_qr_code(client):
    make_user("newbie@example.com", with_totp=False)
    response = sign_in_with_password(client, "newbie@example.com")
    assert response.status_code == 302
    follow = client.get(reverse("home"))
    assert follow.status_code == 302 and follow["Location"].startswith(reverse("two_factor_enrol"))
    page = client.get(reverse("two_factor_enrol"))
    html = page.content.decode()
    assert "<svg" in html  # drawn here, not fetched from a third party
    assert "http" not in re.search(r"<svg.*?</svg>", html, re.S).group(0).replace("http://www.w3.org", "")
    assert 'data-testid="totp-secret"' in html


def test_enrolment_with_correct_code_shows_ten_backup_codes_once(client):
    make_user("newbie@example.com", with_totp=False)
    sign_in_with_password(client, "newbie@example.com")
    device, codes = enrol(client)
    assert len(codes) == 10 and len(set(codes)) == 10
    device.refresh_from_db()
    assert device.confirmed
    # Stored only as hashes.
    stored = BackupCode.objects.filter(device__user=device.user)
    assert stored.count() == 10
    assert not any(c.replace("-", "") in b.code_hash for c in codes for b in stored)
    # Shown once: the page does not show them again.
    again = client.get(reverse("two_factor_backup_codes"))
    assert again.status_code == 302
    # The session is now verified and reaches the overview.
    assert client.get(reverse("home")).status_code == 200
    assert AuditEvent.objects.filter(action="2fa.enrolled", target_id=device.user.public_id).exists()


def test_enrolment_with_wrong_code_is_refused_and_changes_nothing(client):
    user = make_user("newbie@example.com", with_totp=False)
    sign_in_with_password(client, "newbie@example.com")
    client.get(reverse("two_factor_enrol"))
    response = client.post(reverse("two_factor_enrol"), {"code": "000000"})
    assert response.status_code == 200
    assert "That code is not right" in response.content.decode()
    assert not EncryptedTOTPDevice.objects.filter(user=user, confirmed=True).exists()
    assert not BackupCodeDevice.objects.filter(user=user).exists()
    assert client.get(reverse("home")).status_code == 302


def test_sign_in_is_password_then_totp_code(client, owner):
    response = sign_in_with_password(client, owner.email, next_url=reverse("team"))
    assert response.status_code == 302
    step = client.get(response["Location"])
    assert step.status_code == 302 and step["Location"].startswith(reverse("two_factor_verify"))
    device = EncryptedTOTPDevice.objects.get(user=owner)
    done = client.post(step["Location"], {"code": totp_code(device)})
    assert done.status_code == 302 and done["Location"] == reverse("team")
    assert client.get(reverse("team")).status_code == 200
    assert AuditEvent.objects.filter(action="auth.signed_in", target_id=owner.public_id).exists()


def test_wrong_code_is_refused_and_audited(client, owner):
    sign_in_with_password(client, owner.email)
    response = client.post(reverse("two_factor_verify"), {"code": "123456"})
    assert response.status_code == 400
    assert "That code is not right" in response.content.decode()
    assert client.get(reverse("home")).status_code == 302
    assert AuditEvent.objects.filter(action="2fa.code_wrong", target_id=owner.public_id).exists()


def test_repeated_wrong_codes_are_throttled_even_with_the_right_code(client, owner):
    sign_in_with_password(client, owner.email)
    client.post(reverse("two_factor_verify"), {"code": "111111"})
    device = EncryptedTOTPDevice.objects.get(user=owner)
    # Within the back-off window even a correct code is refused, with a clear wait time.
    response = client.post(reverse("two_factor_verify"), {"code": totp_code(device)})
    assert response.status_code == 429
    assert "Too many wrong codes" in response.content.decode()
    assert client.get(reverse("home")).status_code == 302


def test_throttle_applies_across_totp_and_backup_codes(client, owner):
    sign_in_with_password(client, owner.email)
    from accounts.services import backup_codes_regenerate

    codes = backup_codes_regenerate(user=owner)
    client.post(reverse("two_factor_verify"), {"code": "222222"})
    response = client.post(reverse("two_factor_verify"), {"code": codes[0]})
    assert response.status_code == 429


def test_backup_code_works_once_and_only_once(client, owner):
    from accounts.services import backup_codes_regenerate

    codes = backup_codes_regenerate(user=owner)
    sign_in_with_password(client, owner.email)
    ok = client.post(reverse("two_factor_verify"), {"code": codes[3].upper()})
    assert ok.status_code == 302
    assert client.get(reverse("home")).status_code == 200
    client.post(reverse("account_logout"))

    sign_in_with_password(client, owner.email)
    again = client.post(reverse("two_factor_verify"), {"code": codes[3]})
    assert again.status_code == 400
    assert client.get(reverse("home")).status_code == 302
    assert BackupCodeDevice.objects.get(user=owner).remaining() == 9


def test_totp_code_cannot_be_replayed(client, owner):
    device = EncryptedTOTPDevice.objects.get(user=owner)
    code = totp_code(device)
    sign_in_with_password(client, owner.email)
    assert client.post(reverse("two_factor_verify"), {"code": code}).status_code == 302
    client.post(reverse("account_logout"))
    device.refresh_from_db()
    device.throttle_reset()
    sign_in_with_password(client, owner.email)
    assert client.post(reverse("two_factor_verify"), {"code": code}).status_code == 400


def test_two_factor_cannot_be_turned_off_and_reenrolment_needs_a_current_code(verified_client, owner):
    client = verified_client(owner)
    # A verified user cannot just open the set-up page to replace the device.
    response = client.get(reverse("two_factor_enrol"))
    assert response.status_code == 302 and response["Location"] == reverse("settings_security")
    # Wrong current code: no way through.
    assert client.post(reverse("two_factor_reenrol"), {"code": "000000"}).status_code == 400
    old = EncryptedTOTPDevice.objects.get(user=owner)
    wait_out_throttle(old)
    response = client.post(reverse("two_factor_reenrol"), {"code": totp_code(old)})
    assert response.status_code == 302 and response["Location"].startswith(reverse("two_factor_enrol"))
    client.get(reverse("two_factor_enrol"))
    new = EncryptedTOTPDevice.objects.get(user=owner, confirmed=False)
    client.post(reverse("two_factor_enrol"), {"code": totp_code(new)})
    devices = EncryptedTOTPDevice.objects.filter(user=owner)
    assert list(devices.values_list("pk", "confirmed")) == [(new.pk, True)]
    assert AuditEvent.objects.filter(action="2fa.reenrolled").exists()
    # No URL disables 2FA.
    assert not [n for n in _url_names() if "disable" in n or "deactivate" in n]


def wait_out_throttle(device) -> None:
    """Move the last failure into the past, as if the back-off period had elapsed."""
    device.refresh_from_db()
    device.throttling_failure_timestamp = timezone.now() - timedelta(hours=1)
    device.save(update_fields=["throttling_failure_timestamp"])


def _url_names() -> list[str]:
    from tests.platform.test_every_page_needs_two_factor import all_view_names

    return all_view_names()


def test_recent_otp_is_required_for_sensitive_actions(verified_client, owner):
    client = verified_client(owner)
    session = client.session
    session["otp_verified_at"] = int(time.time()) - 6 * 60
    session.save()
    response = client.post(reverse("two_factor_backup_codes_regenerate"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("two_factor_step_up"))
    assert not BackupCodeDevice.objects.filter(user=owner).exists()

    device = EncryptedTOTPDevice.objects.get(user=owner)
    step = client.post(
        reverse("two_factor_step_up") + "?next=" + reverse("settings_security"), {"code": totp_code(device)}
    )
    assert step.status_code == 302 and step["Location"] == reverse("settings_security")
    response = client.post(reverse("two_factor_backup_codes_regenerate"))
    assert response.status_code == 302
    assert BackupCodeDevice.objects.get(user=owner).remaining() == 10


def test_recent_otp_mixin_and_api_answer(rf, owner):
    from django.http import HttpResponse
    from django.views import View

    from accounts.otp import RecentOTPRequiredMixin, require_recent_otp

    class Sensitive(RecentOTPRequiredMixin, View):
        def get(self, request):
            return HttpResponse("done")

    request = rf.get("/api/v1/refunds")
    request.user = owner
    request.user.is_verified = lambda: True
    request.session = {"otp_verified_at": int(time.time()) - 3600}
    response = Sensitive.as_view()(request)
    assert response.status_code == 403 and b"recent_otp_required" in response.content

    request.session = {"otp_verified_at": int(time.time())}
    assert Sensitive.as_view()(request).content == b"done"

    @require_recent_otp(minutes=1)
    def view(request):
        return HttpResponse("ok")

    request.session = {"otp_verified_at": int(time.time()) - 90}
    assert view(request).status_code == 403


def test_backup_codes_regenerated_replace_the_old_set(owner):
    from accounts.services import backup_codes_regenerate, second_factor_verify
    from security.errors import ApplicationError

    old = backup_codes_regenerate(user=owner)
    new = backup_codes_regenerate(user=owner)
    with pytest.raises(ApplicationError):
        second_factor_verify(user=owner, code=old[0])
    device = BackupCodeDevice.objects.get(user=owner)
    device.throttling_failure_count = 0
    device.throttling_failure_timestamp = None
    device.save()
    assert second_factor_verify(user=owner, code=new[0]) == device
    assert device.last_used_at is None or device.last_used_at <= timezone.now()
