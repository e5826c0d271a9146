"""Key sign-in journeys in a real browser."""

from __future__ import annotations

import re
import time

import pytest
from django.core import mail
from playwright.sync_api import Page, expect

from accounts.services import invitation_create
from tests.conftest import PASSWORD, make_tenant, make_user, totp_code
from tests.e2e.conftest import code_from_secret, save_screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NEW_PASSWORD = "plum-harbour-lantern-93"


def sign_in_with_password(page: Page, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Continue").click()


def enter_code(page: Page, code: str) -> None:
    page.get_by_label("Authentication code").fill(code)
    page.get_by_role("button", name="Verify").click()


def sign_out(page: Page) -> None:
    page.get_by_test_id("sign-out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_invited_teammate_enrols_and_signs_in_with_codes(live_server, page: Page, shot) -> None:
    tenant = make_tenant("acme")
    invitation_create(
        actor=tenant.owner, merchant=tenant.merchant, email="dana@acme.example.com", role="analyst"
    )
    link = re.search(r"https?://\S+/invite/\S+/", mail.outbox[-1].body).group(0)
    path = "/" + link.split("/", 3)[3]
    base = live_server.url

    # 1. The invitation: name and a password.
    page.goto(base + path)
    expect(page.get_by_role("heading", name="Join Acme Shop")).to_be_visible()
    page.get_by_label("Your name").fill("Dana Analyst")
    page.get_by_label("Choose a password").fill(NEW_PASSWORD)
    page.get_by_label("Repeat the password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Create account").click()

    # 2. Enrolment: QR drawn by us, secret as text; a wrong code first, then the right one.
    expect(page.get_by_role("heading", name="Set up two-factor authentication")).to_be_visible()
    expect(page.locator(".qr svg")).to_be_visible()
    secret = page.get_by_test_id("totp-secret").get_attribute("data-secret")
    shot("enrol-totp")
    page.get_by_label("Code from your app").fill("000000")
    page.get_by_role("button", name="Turn on two-factor authentication").click()
    expect(page.get_by_text("That code is not right")).to_be_visible()
    time.sleep(1.2)  # the throttle's one-second back-off after a wrong code
    page.get_by_label("Code from your app").fill(code_from_secret(secret))
    page.get_by_role("button", name="Turn on two-factor authentication").click()

    # 3. Backup codes, shown once.
    expect(page.get_by_role("heading", name="Save your backup codes")).to_be_visible()
    codes = page.get_by_test_id("backup-codes").locator("code").all_inner_texts()
    assert len(codes) == 10
    shot("backup-codes")
    page.get_by_test_id("codes-saved").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    sign_out(page)

    # 4. Password, then a wrong code (refused), then the right code: the overview.
    sign_in_with_password(page, base, "dana@acme.example.com", NEW_PASSWORD)
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    enter_code(page, "999999")
    expect(page.get_by_text("That code is not right")).to_be_visible()
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    time.sleep(1.2)
    enter_code(page, code_from_secret(secret, offset_seconds=30))
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_test_id("current-merchant")).to_have_text("Acme Shop")
    expect(page.get_by_test_id("current-user")).to_have_text("dana@acme.example.com")
    shot("merchant-overview")
    sign_out(page)

    # 5. A backup code works once and only once.
    sign_in_with_password(page, base, "dana@acme.example.com", NEW_PASSWORD)
    enter_code(page, codes[0])
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    sign_out(page)
    sign_in_with_password(page, base, "dana@acme.example.com", NEW_PASSWORD)
    enter_code(page, codes[0])
    expect(page.get_by_text("That code is not right")).to_be_visible()
    expect(page.get_by_role("heading", name="Overview")).to_have_count(0)


def test_admin_asks_for_a_code_after_the_password(live_server, page: Page, shot) -> None:
    admin = make_user("root@platform.example.com", is_staff=True, is_superuser=True)
    base = live_server.url
    page.goto(f"{base}/admin/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Email address").fill(admin.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    assert "/accounts/2fa/verify/" in page.url
    shot("admin-asks-for-code")
    # The admin stays closed until the code is given.
    page.goto(f"{base}/admin/")
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    enter_code(page, totp_code(admin.encryptedtotpdevice_set.get()))
    expect(page.get_by_text("Platform administration")).to_be_visible()


def test_layout_is_readable_on_a_phone(live_server, browser) -> None:
    tenant = make_tenant("mobile")
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        base = live_server.url
        sign_in_with_password(page, base, tenant.owner.email, PASSWORD)
        enter_code(page, totp_code(tenant.owner.encryptedtotpdevice_set.get()))
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        # No horizontal scrolling on a phone; navigation sits behind the Menu toggle.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        page.get_by_text("Menu").click()
        expect(page.locator(".nav-toggle").get_by_role("link", name="Team")).to_be_visible()
        save_screenshot(page, "phone-overview")
    finally:
        context.close()
