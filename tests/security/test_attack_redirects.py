"""No ``next=`` (nor a Referer) sends a browser off this site.

Every place that reads ``next`` is in ``NEXT_READERS`` (a scan of the project's code fails on a new
one), and each is attacked with every target in ``OFF_SITE_TARGETS``: the redirect it answers, and
every redirect after it until the browser lands on a page, stays on this site.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import EncryptedTOTPDevice
from tests.conftest import PASSWORD, Tenant, login_verified, totp_code
from tests.security.attack_world import OFF_SITE_TARGETS, stays_on_site

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
PROJECT_DIRS = ("accounts", "payments", "security", "compliance", "kyc", "fintech_portal")

# Source file -> what reads ``next`` there, and the test that attacks it.
NEXT_READERS: dict[str, str] = {
    "accounts/views_two_factor.py": "safe_next: enrol, backup codes, verify, step-up (tests below)",
    "accounts/admin_site.py": "the admin's sign-in hands next to ours (test_admin_sign_in_...)",
    "accounts/otp.py": "step-up builds next from the Referer (test_step_up_from_a_forged_referer_...)",
    "accounts/middleware.py": "writes next from the request's own path (on-site by construction)",
    "payments/views_webhooks.py": "next == 'delivery' picks one of two of our pages; never a URL",
}
# allauth's own views read next too (get_next_redirect_url): sign-in, sign-out, password change.

READS_NEXT = re.compile(r"""["']next["']""")


def test_every_reader_of_next_is_listed() -> None:
    found = set()
    for top in PROJECT_DIRS:
        for path in (ROOT / top).rglob("*.py"):
            if "migrations" not in path.parts and READS_NEXT.search(path.read_text()):
                found.add(str(path.relative_to(ROOT)))
    assert found == set(NEXT_READERS), found ^ set(NEXT_READERS)


def _land(client: Client, response, hops: int = 6):  # noqa: ANN001, ANN202 - test responses
    """Follow redirects (GET) until a page, asserting each one stays on this site."""
    seen = []
    while response.status_code in (301, 302, 303, 307, 308) and hops:
        location = response["Location"]
        seen.append(location)
        assert stays_on_site(location), seen
        response = client.get(location)
        hops -= 1
    return response, seen


def _code(user) -> str:  # noqa: ANN001
    device = EncryptedTOTPDevice.objects.get(user=user)
    return totp_code(device, time.time() + 30)  # the next step's code, never one already used


@pytest.mark.parametrize("target", OFF_SITE_TARGETS)
def test_sign_in_then_code_step_stay_on_site(client, owner, target: str) -> None:
    login = reverse("account_login")
    client.get(login, {"next": target})
    response = client.post(login, {"login": owner.email, "password": PASSWORD, "next": target})
    assert response.status_code == 302
    _land(client, response)
    # The code step, with the same target posted by the attacker's form.
    verify = client.post(reverse("two_factor_verify"), {"code": _code(owner), "next": target})
    assert verify.status_code == 302, verify.status_code
    _land(client, verify)
    assert client.session.get("otp_device_id")  # signed in for real, and still here


@pytest.mark.parametrize("target", OFF_SITE_TARGETS)
def test_code_step_of_a_verified_session_stays_on_site(verified_client, owner, target: str) -> None:
    client = verified_client(owner)
    for response in (
        client.get(reverse("two_factor_verify"), {"next": target}),
        client.post(reverse("two_factor_verify"), {"next": target}),
        client.get(reverse("two_factor_backup_codes"), {"next": target}),
        client.get(reverse("two_factor_enrol"), {"next": target}),
    ):
        _land(client, response)


@pytest.mark.parametrize("target", OFF_SITE_TARGETS)
def test_step_up_stays_on_site(verified_client, owner, target: str) -> None:
    client = verified_client(owner)
    response = client.post(
        f"{reverse('two_factor_step_up')}?next={target}", {"code": _code(owner), "next": target}
    )
    assert response.status_code == 302
    _land(client, response)


@pytest.mark.parametrize("target", OFF_SITE_TARGETS)
def test_step_up_from_a_forged_referer_stays_on_site(tenant: Tenant, target: str) -> None:
    """A stale session's POST is sent to the step-up with the Referer as next; the code then
    entered must not follow it off-site."""
    client = login_verified(Client(), tenant.owner)
    session = client.session
    session["otp_verified_at"] = int(time.time()) - 3600
    session.save()
    response = client.post(reverse("api_key_create"), {"name": "x", "scope": "read"}, HTTP_REFERER=target)
    assert response.status_code == 302 and stays_on_site(response["Location"])
    carried = parse_qs(urlparse(response["Location"]).query).get("next", [""])[0]
    after = client.post(response["Location"], {"code": _code(tenant.owner), "next": carried})
    assert after.status_code == 302
    _land(client, after)


@pytest.mark.parametrize("target", OFF_SITE_TARGETS)
def test_enrolment_stays_on_site(password_only_client, db, target: str) -> None:
    from tests.conftest import make_user

    user = make_user("new@example.com", with_totp=False)
    client = password_only_client(user)
    page = client.get(reverse("two_factor_enrol"), {"next": target})
    assert page.status_code == 200
    device = EncryptedTOTPDevice.objects.get(user=user, confirmed=False)
    response = client.post(
        f"{reverse('two_factor_enrol')}?next={target}", {"code": totp_code(device), "next": target}
    )
    assert response.status_code == 302
    _land(client, response)


@pytest.mark.parametrize("target", OFF_SITE_TARGETS)
def test_sign_out_stays_on_site(verified_client, owner, target: str) -> None:
    client = verified_client(owner)
    response = client.post(reverse("account_logout"), {"next": target})
    assert response.status_code == 302
    _land(client, response)


@pytest.mark.parametrize("target", OFF_SITE_TARGETS)
def test_password_change_stays_on_site(verified_client, owner, target: str) -> None:
    client = verified_client(owner)
    new = "another-horse-battery-staple-43"
    response = client.post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": new, "password2": new, "next": target},
    )
    assert response.status_code == 302, response.status_code
    _land(client, response)


@pytest.mark.parametrize("target", OFF_SITE_TARGETS)
def test_admin_sign_in_hands_next_on_and_it_stays_on_site(client, owner, target: str) -> None:
    response = client.get(reverse("admin:login"), {"next": target})
    assert response.status_code == 302 and stays_on_site(response["Location"])
    carried = parse_qs(urlparse(response["Location"]).query).get("next", [""])[0]
    signed_in = client.post(
        reverse("account_login"), {"login": owner.email, "password": PASSWORD, "next": carried}
    )
    _land(client, signed_in)
    verify = client.post(reverse("two_factor_verify"), {"code": _code(owner), "next": carried})
    _land(client, verify)


def test_the_on_site_check_itself() -> None:
    assert all(not stays_on_site(t) for t in OFF_SITE_TARGETS)
    assert stays_on_site("/payments/") and stays_on_site("http://testserver/team/")
