"""Every page carries a strict Content-Security-Policy and the usual hardening headers."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_sign_in_page_has_strict_headers(client):
    response = client.get(reverse("account_login"))
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert response["X-Frame-Options"] == "DENY"


def test_pages_have_no_inline_scripts_or_third_party_assets(verified_client, owner):
    client = verified_client(owner)
    for name in ("home", "team", "settings_security"):
        html = client.get(reverse(name)).content.decode()
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag, f"inline script on {name}: {tag}"
        for url in re.findall(r'(?:src|href)="(https?://[^"]+)"', html):
            raise AssertionError(f"third-party asset on {name}: {url}")


def test_layout_shows_the_signed_in_user_and_merchant_with_role_navigation(verified_client, tenant):
    html = verified_client(tenant.owner).get(reverse("home")).content.decode()
    assert tenant.owner.email in html and tenant.merchant.display_name in html
    for label in ("Overview", "Payments", "Team", "Developers", "Settings"):
        assert f">{label}</a>" in html
    for staff_label in ("KYC queue", "Privacy requests", "Audit log"):
        assert f">{staff_label}</a>" not in html


def test_staff_navigation_follows_roles(verified_client):
    from django.contrib.auth.models import Group

    from tests.conftest import make_user

    officer = make_user("sec@platform.example.com")
    officer.groups.add(Group.objects.get(name="security_officer"))
    html = verified_client(officer).get(reverse("home")).content.decode()
    assert ">Incidents</a>" in html and ">Audit log</a>" in html
    assert ">KYC queue</a>" not in html and ">Payments</a>" not in html and ">Admin</a>" not in html

    admin = make_user("root@platform.example.com", is_staff=True, is_superuser=True)
    html = verified_client(admin).get(reverse("home")).content.decode()
    for label in ("KYC queue", "Alerts", "Privacy requests", "Incidents", "Audit log", "Admin"):
        assert f">{label}</a>" in html
