"""Browser journeys: Playwright driving Debian's Chromium against pytest-django's live server."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import pytest
from django_otp.oath import TOTP

from tests.conftest import PASSWORD, totp_code
from tests.payments.webhook_helpers import dns, receiver, receiver_server  # noqa: F401 - merchant webhook fixtures

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.path.exists(CHROMIUM):
        return
    if os.environ.get("REQUIRE_BROWSER_TESTS") == "1":
        raise pytest.UsageError(
            f"browser tests are required but {CHROMIUM} is missing (apt-get install chromium)"
        )
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_FLAGS, "headless": True}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": {"width": 1280, "height": 860}, "locale": "en-GB"}


def save_screenshot(page, name: str) -> Path:
    """Save a named full-page screenshot to test-artifacts/ (looked at by people, kept by CI)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def shot(page):
    return lambda name: save_screenshot(page, name)


def code_from_secret(secret: str, offset_seconds: int = 0) -> str:
    """What an authenticator app shows for this base32 secret, ``offset_seconds`` from now."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    totp = TOTP(key)
    totp.time = time.time() + offset_seconds
    return f"{totp.token():06d}"


def sign_in(page, base: str, user) -> None:  # noqa: ANN001 - a Playwright page and a User
    """Sign ``user`` in through the login page with their password and a current authenticator code."""
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email address").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Authentication code").fill(totp_code(user.encryptedtotpdevice_set.get()))
    page.get_by_role("button", name="Verify").click()
