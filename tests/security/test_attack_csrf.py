"""Every state-changing form refuses a POST without a CSRF token, and the refusal changes nothing.

Generated from the URL configuration: every URL (the walk in
``tests/platform/test_every_page_needs_two_factor``), filled with the victim's rows, is POSTed by
the person who could otherwise use it (anonymous for public pages and sign-in, a password-only
session for the code step, a platform admin for the admin and key pages, the merchant's owner for
the rest) from a browser that has the CSRF cookie but sends no token. The answer is Django's CSRF
refusal (403, logged on ``django.security.csrf``), or for the API (which DRF checks for session
callers) a 403 naming CSRF.

A GET is never checked for a token, so ``test_get_changes_nothing`` also GETs every URL: nothing may
change but an audit event recording the read (``GET_WRITES`` lists, with the reason, the one page that
writes by design: the public checkout page starting its payment).

Exempt by design, listed here; a new ``csrf_exempt`` view outside /api/ fails
``test_only_the_listed_views_are_exempt``:
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.test import Client
from django.urls import resolve, reverse

from tests.conftest import PASSWORD, make_user, totp_code
from tests.security.attack_world import (
    POST_BODIES,
    VIEW_NAMES,
    World,
    changed_tables,
    is_admin,
    module_world,
    snapshot,
    url_for,
    verified,
)

pytestmark = pytest.mark.django_db

# URL name -> why it takes POSTs without a CSRF token.
EXEMPT: dict[str, str] = {
    "webhook_stripe": "gateway events: machine-to-machine, each verified by its Stripe-Signature HMAC",
    "webhook_braintree": "gateway events: machine-to-machine, each verified by Braintree's bt_signature",
}
__doc__ = (__doc__ or "") + "".join(f"\n* ``{name}``: {why}" for name, why in EXEMPT.items()) + "\n"

# Public API pages that take no POST at all (DRF checks CSRF only for a signed-in session).
API_GET_ONLY = frozenset({"api_schema"})
STAFF_PAGES = frozenset({"key_management", "key_rotation_start", "key_rotation_progress"})


def csrf_refused(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Django's CSRF refusal, marked so a test can tell it from any other 403."""
    response = HttpResponseForbidden("CSRF verification failed.")
    response[CSRF_MARK] = reason or "refused"
    return response


CSRF_MARK = "X-Test-CSRF-Refused"


@pytest.fixture
def csrf_marked(settings) -> None:
    settings.CSRF_FAILURE_VIEW = f"{__name__}.csrf_refused"


@pytest.fixture(scope="module")
def shared_world(django_db_setup, django_db_blocker) -> Iterator[World]:  # noqa: ANN001
    """Shared by the module: every test asserts its refused POST changed nothing."""
    with module_world(django_db_blocker) as world:
        yield world


@pytest.fixture
def world(shared_world: World, db: None) -> World:
    return shared_world


def _csrf_client() -> Client:
    return Client(enforce_csrf_checks=True)


def _attacker_for(world: World, view_name: str) -> tuple[Client, dict[str, str]]:
    """A browser of the person who could use ``view_name``, and the form they would send."""
    if view_name in settings.PUBLIC_URL_NAMES:
        body = (
            {"login": world.victim.owner.email, "password": PASSWORD} if view_name == "account_login" else {}
        )
        return _csrf_client(), body
    if view_name in settings.PARTIAL_AUTH_URL_NAMES:
        client = _csrf_client()
        client.force_login(world.victim.owner, backend="allauth.account.auth_backends.AuthenticationBackend")
        from accounts.models import EncryptedTOTPDevice

        device = EncryptedTOTPDevice.objects.get(user=world.victim.owner)
        return client, {"code": totp_code(device, time.time() + 30)}
    if is_admin(view_name) or view_name in STAFF_PAGES:
        admin = world.extra.get("admin") or make_user(
            "root@platform.example.com", is_staff=True, is_superuser=True
        )
        world.extra["admin"] = admin
        return verified(admin, enforce_csrf_checks=True), {}
    body = POST_BODIES[view_name](world) if view_name in POST_BODIES else {}
    return verified(world.victim.owner, enforce_csrf_checks=True), body


def _url(world: World, view_name: str) -> str:
    if view_name in ("checkout_pay", "checkout_return", "checkout_done"):
        return reverse(view_name, args=[world.link.public_id])
    return url_for(world, view_name)


def test_only_the_listed_views_are_exempt(world: World) -> None:
    exempt = set()
    for view_name in VIEW_NAMES:
        url = _url(world, view_name)
        if getattr(resolve(url).func, "csrf_exempt", False) and not url.startswith("/api/"):
            exempt.add(view_name)
    assert exempt == set(EXEMPT), exempt ^ set(EXEMPT)


def test_the_walk_covers_sign_in_and_the_code_step() -> None:
    for name in (
        "account_login",
        "two_factor_verify",
        "two_factor_step_up",
        "account_logout",
        "checkout_pay",
    ):
        assert name in VIEW_NAMES


@pytest.mark.parametrize("view_name", [n for n in VIEW_NAMES if n not in EXEMPT])
def test_post_without_a_csrf_token_is_refused(world: World, csrf_marked: None, view_name: str) -> None:
    client, body = _attacker_for(world, view_name)
    url = _url(world, view_name)
    client.get(url)  # the browser has the CSRF cookie (when the page sets one), but no token is sent
    before = snapshot(world)
    if url.startswith("/api/"):
        response = client.post(url, data=json.dumps(body), content_type="application/json")
        if view_name in API_GET_ONLY:
            assert response.status_code == 405, (view_name, response.status_code)
        else:
            assert response.status_code == 403, (view_name, response.status_code)
            assert b"csrf" in response.content.lower(), (view_name, response.content[:200])
    else:
        response = client.post(url, body)
        assert response.status_code == 403, (view_name, response.status_code)
        assert response.has_header(CSRF_MARK), view_name
    assert changed_tables(before, snapshot(world)) == [], view_name


@pytest.mark.parametrize("view_name", sorted(EXEMPT))
def test_exempt_webhooks_still_refuse_an_unsigned_post(
    world: World, csrf_marked: None, view_name: str
) -> None:
    before = snapshot(world)
    response = _csrf_client().post(reverse(view_name), data=b"{}", content_type="application/json")
    # Refused for its missing signature (or, without gateway credentials, as not configured).
    assert response.status_code >= 400 and not response.has_header(CSRF_MARK)
    assert changed_tables(before, snapshot(world)) == []


# A GET is never checked for a CSRF token, so no GET may change anything; it may only record that it
# happened (an audit event of a read).
GET_MAY_RECORD = frozenset({"security.AuditEvent"})
# Sign-out ends the session it is sent with (the only row it touches is that session's).
GET_SKIPPED = frozenset({"account_logout", "admin:logout"})
# GETs that do write, by design, and why that is safe.
GET_WRITES: dict[str, str] = {
    "checkout_pay": "opening the public checkout page starts the payment (the gateway's intent, which "
    "Stripe's Payment Element needs); it charges nothing and a second visit reuses it",
}

# GETs that count themselves, by design: (table, the one column that moves), and why that is safe.
GET_COUNTS: dict[str, tuple[tuple[str, str], str]] = {
    "payment_export_download": (
        ("payments.PaymentExport", "downloads"),
        "a download is counted and audited; a forged GET only makes the victim's own browser fetch "
        "a file the victim may have",
    ),
}


@pytest.mark.parametrize("view_name", [n for n in VIEW_NAMES if n not in GET_SKIPPED])
def test_get_changes_nothing(world: World, view_name: str) -> None:
    client, _body = _attacker_for(world, view_name)
    before = snapshot(world)
    client.get(_url(world, view_name))
    changed = set(changed_tables(before, snapshot(world)))
    if view_name in GET_WRITES:
        client.get(_url(world, view_name))
        again = snapshot(world)
        client.get(_url(world, view_name))
        assert set(changed_tables(again, snapshot(world))) <= GET_MAY_RECORD, (
            f"{view_name}: a second GET wrote"
        )
        return
    if view_name in GET_COUNTS:
        # Only the count moves (and the download is audited): no other column, no other row.
        counter, reason = GET_COUNTS[view_name]
        assert changed <= GET_MAY_RECORD | {counter[0]}, (view_name, changed, reason)
        after = snapshot(world)
        drop = counter[1]
        strip = [{k: v for k, v in row.items() if k != drop} for row in before[counter[0]]]
        assert strip == [{k: v for k, v in row.items() if k != drop} for row in after[counter[0]]]
        return
    assert changed <= GET_MAY_RECORD, (view_name, changed)
