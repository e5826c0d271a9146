"""Staff journeys in a real browser: the audit log and the encryption-key page."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import Page, expect

from security.keyring import get_keyring
from tests.conftest import make_user
from tests.e2e.conftest import save_screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_security_officer_reviews_the_audit_log_and_keys(live_server, page: Page) -> None:
    officer = make_user("sec@platform.example.com")
    officer.groups.add(Group.objects.get(name="security_officer"))
    sign_in(page, live_server.url, officer)
    expect(page.get_by_role("heading", name="Back office")).to_be_visible()
    page.get_by_role("link", name="Audit log").first.click()
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    # Their own sign-in is on the log.
    expect(page.get_by_test_id("audit-table")).to_contain_text("auth.signed_in")
    page.get_by_label("Action").fill("auth.signed_in")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("audit-table")).to_contain_text(officer.email)
    expect(page.get_by_test_id("audit-table")).not_to_contain_text("auth.password_accepted")
    save_screenshot(page, "staff-audit-log")
    page.get_by_role("link", name="Encryption keys").first.click()
    expect(page.get_by_role("heading", name="Encryption keys", exact=True)).to_be_visible()
    expect(page.get_by_test_id("active-kek")).to_have_text(get_keyring().active_id)
    save_screenshot(page, "staff-encryption-keys")
