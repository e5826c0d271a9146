"""Forged, damaged and dead credentials open nothing and change nothing.

Sessions (database-backed: the cookie is a random key, the stored data is signed with
``SECRET_KEY`` and carries a hash of the password and the sign-out epoch): a key with one character
flipped, a truncated key, session data signed with another ``SECRET_KEY``, a session whose auth hash
was made with another ``SECRET_KEY``, and valid sessions of a deactivated, a deleted and a
signed-out-everywhere user. API keys: the secret part changed, truncated, another merchant's lookup
with our secret, the mode prefix edited, revoked, expired, a suspended merchant's, and test keys
against live objects (and live keys against test ones). Each answers 401/403 (a page: the sign-in
redirect) and the victim's rows do not change.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY

from accounts.api_keys import LOOKUP_LENGTH, api_key_create, api_key_revoke
from accounts.models import ApiKey, EncryptedTOTPDevice, Merchant, Role, User
from accounts.otp import OTP_VERIFIED_AT
from payments.models import CheckoutSession, Payment, PaymentSettings
from tests.payments.dashboard_helpers import make_payment
from tests.payments.webhook_helpers import dns  # noqa: F401 - fixture
from tests.security.attack_world import (
    World,
    changed_tables,
    shared_world_fixture,  # noqa: F401 - fixture
    snapshot,
    verified,
    world_fixture,  # noqa: F401 - fixture
)

pytestmark = pytest.mark.django_db

COOKIE = settings.SESSION_COOKIE_NAME
ATTACKER_SECRET_KEY = "attacker-chosen-secret-key-" + "x" * 40
BACKEND = "allauth.account.auth_backends.AuthenticationBackend"


def _fresh_member(world: World, role: str = Role.ADMIN) -> User:
    """A new teammate (this test may deactivate or delete them)."""
    from accounts.models import Membership
    from tests.conftest import make_user

    user = make_user(f"fresh.{role}@victim.example.com")
    Membership.objects.create(user=user, merchant=world.victim.merchant, role=role)
    return user


# --- What an attacker tries with a session cookie ------------------------------------------------------


def _with_cookie(value: str) -> Client:
    client = Client()
    client.cookies[COOKIE] = value
    return client


def _assert_locked_out(world: World, client: Client) -> None:
    """Signed out: pages send to sign-in, the API says 401, state-changing POSTs change nothing."""
    before = snapshot(world)
    page = client.get(reverse("payments_list"))
    assert page.status_code == 302 and page["Location"].startswith(reverse("account_login")), page.status_code
    assert client.get("/api/v1/payments").status_code in (401, 403)
    for url, body in (
        (reverse("api_key_revoke", args=[world.key.public_id]), {}),
        (reverse("team_member_role", args=[world.teammate_membership.pk]), {"role": Role.OWNER}),
        (reverse("sign_out_everywhere"), {}),
        (reverse("payment_refund", args=[world.payment.public_id]), {"reason": "x", "refund_id": ""}),
    ):
        response = client.post(url, body)
        assert response.status_code in (302, 401, 403), (url, response.status_code)
        if response.status_code == 302:
            assert response["Location"].startswith(reverse("account_login")), (url, response["Location"])
    response = client.post(
        "/api/v1/checkout_sessions",
        data=json.dumps({"amount": 100, "currency": "EUR"}),
        content_type="application/json",
    )
    assert response.status_code in (401, 403)
    assert changed_tables(before, snapshot(world)) == []


def _session_key(world: World) -> tuple[Client, str]:
    client = verified(world.victim.owner)
    assert client.get(reverse("payments_list")).status_code == 200  # the real one works
    return client, client.cookies[COOKIE].value


def _flip(text: str, at: int) -> str:
    char = text[at]
    return text[:at] + ("a" if char != "a" else "b") + text[at + 1 :]


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda key: _flip(key, 0), id="first-char-flipped"),
        pytest.param(lambda key: _flip(key, len(key) // 2), id="middle-char-flipped"),
        pytest.param(lambda key: _flip(key, len(key) - 1), id="last-char-flipped"),
        pytest.param(lambda key: key[:-1], id="truncated-by-one"),
        pytest.param(lambda key: key[: len(key) // 2], id="truncated-to-half"),
        pytest.param(lambda key: key + "a", id="extended"),
        pytest.param(lambda key: key.upper(), id="case-changed"),
    ],
)
def test_tampered_session_cookie_is_refused(world: World, forge: Callable[[str], str]) -> None:
    _, key = _session_key(world)
    _assert_locked_out(world, _with_cookie(forge(key)))


def _forged_session(user: User, *, data_key: str | None, hash_key: str | None) -> str:
    """A session row for ``user`` whose data is signed with ``data_key`` and whose auth hash is made
    with ``hash_key`` (None: this site's real SECRET_KEY). Returns its key."""

    def auth_hash() -> str:
        if hash_key is None:
            return user.get_session_auth_hash()
        with override_settings(SECRET_KEY=hash_key):
            return user.get_session_auth_hash()

    device = EncryptedTOTPDevice.objects.get(user=user)
    values = {
        SESSION_KEY: str(user.pk),
        BACKEND_SESSION_KEY: BACKEND,
        HASH_SESSION_KEY: auth_hash(),
        DEVICE_ID_SESSION_KEY: device.persistent_id,
        OTP_VERIFIED_AT: int(time.time()),
    }
    if data_key is None:
        store = SessionStore()
        store.update(values)
        store.save()
        return store.session_key
    with override_settings(SECRET_KEY=data_key):
        store = SessionStore()
        store.update(values)
        store.save()
        return store.session_key


def test_a_session_forged_the_honest_way_works(world: World) -> None:
    """The control for the forgeries below: the same row made with the real key signs in."""
    client = _with_cookie(_forged_session(world.victim.owner, data_key=None, hash_key=None))
    assert client.get(reverse("payments_list")).status_code == 200


def test_session_data_signed_with_another_secret_key_is_refused(world: World) -> None:
    key = _forged_session(world.victim.owner, data_key=ATTACKER_SECRET_KEY, hash_key=ATTACKER_SECRET_KEY)
    _assert_locked_out(world, _with_cookie(key))


def test_session_whose_auth_hash_was_made_with_another_secret_key_is_refused(world: World) -> None:
    key = _forged_session(world.victim.owner, data_key=None, hash_key=ATTACKER_SECRET_KEY)
    _assert_locked_out(world, _with_cookie(key))


def test_session_of_a_deactivated_user_is_refused(world: World) -> None:
    admin = _fresh_member(world)
    client, key = _session_key_for(admin)
    User.objects.filter(pk=admin.pk).update(is_active=False)
    _assert_locked_out(world, _with_cookie(key))


def test_session_of_a_deleted_user_is_refused(world: World) -> None:
    admin = _fresh_member(world)
    client, key = _session_key_for(admin)
    admin.delete()
    _assert_locked_out(world, _with_cookie(key))


def test_session_after_sign_out_everywhere_is_refused(world: World) -> None:
    stolen_client, stolen = _session_key(world)
    other = verified(world.victim.owner)
    assert other.post(reverse("sign_out_everywhere")).status_code == 302
    _assert_locked_out(world, _with_cookie(stolen))


def _session_key_for(user: User) -> tuple[Client, str]:
    client = verified(user)
    assert client.get(reverse("payments_list")).status_code == 200
    return client, client.cookies[COOKIE].value


# --- What an attacker tries with an API key --------------------------------------------------------------


def _bearer(secret: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def _assert_key_refused(world: World, secret: str) -> None:
    client = _bearer(secret)
    before = snapshot(world)
    for url in ("/api/v1/me", "/api/v1/payments", f"/api/v1/payments/{world.payment.public_id}"):
        assert client.get(url).status_code in (401, 403), url
    for url, body in (
        ("/api/v1/checkout_sessions", {"amount": 100, "currency": "EUR", "description": "x"}),
        (f"/api/v1/checkout_sessions/{world.link.public_id}/expire", {}),
        ("/api/v1/refunds", {"payment": world.payment.public_id, "reason": "x"}),
    ):
        response = client.post(url, data=json.dumps(body), content_type="application/json")
        assert response.status_code in (401, 403), (url, response.status_code)
    assert changed_tables(before, snapshot(world)) == []


def _body(secret: str) -> str:
    return secret.split("_", 2)[2]


def test_the_real_key_works(world: World) -> None:
    """The control for the forgeries below."""
    assert _bearer(world.key_secret).get(f"/api/v1/payments/{world.payment.public_id}").status_code == 200


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda s, other: _flip(s, len(s) - 1), id="secret-part-changed"),
        pytest.param(
            lambda s, other: _flip(s, len("fp_test_") + LOOKUP_LENGTH), id="secret-first-char-changed"
        ),
        pytest.param(lambda s, other: _flip(s, len("fp_test_")), id="lookup-changed"),
        pytest.param(lambda s, other: s[:-1], id="truncated-by-one"),
        pytest.param(lambda s, other: s[: len("fp_test_") + LOOKUP_LENGTH], id="lookup-only"),
        pytest.param(lambda s, other: s + "A", id="extended"),
        pytest.param(
            lambda s, other: "fp_test_" + _body(s)[:LOOKUP_LENGTH] + _body(other)[LOOKUP_LENGTH:],
            id="our-lookup-their-secret",
        ),
        pytest.param(
            lambda s, other: "fp_test_" + _body(other)[:LOOKUP_LENGTH] + _body(s)[LOOKUP_LENGTH:],
            id="their-lookup-our-secret",
        ),
        pytest.param(lambda s, other: s.replace("fp_test_", "fp_live_", 1), id="mode-prefix-edited"),
        pytest.param(lambda s, other: s.lower(), id="case-changed"),
    ],
)
def test_forged_api_key_is_refused(world: World, forge: Callable[[str, str], str]) -> None:
    # The outsider holds their own valid key and knows (or guesses) parts of the victim's.
    _assert_key_refused(world, forge(world.key_secret, world.outsider_key_secret))


def test_key_sent_another_way_is_refused(world: World) -> None:
    before = snapshot(world)
    for header in (f"Basic {world.key_secret}", f"Token {world.key_secret}", world.key_secret, "Bearer "):
        response = Client(HTTP_AUTHORIZATION=header).get("/api/v1/payments")
        assert response.status_code in (401, 403), header
    assert changed_tables(before, snapshot(world)) == []


def test_revoked_key_is_refused(world: World) -> None:
    api_key_revoke(actor=world.victim.owner, key=world.key)
    _assert_key_refused(world, world.key_secret)


def test_expired_key_is_refused(world: World) -> None:
    ApiKey.objects.filter(pk=world.key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    _assert_key_refused(world, world.key_secret)


def test_key_of_a_suspended_merchant_is_refused(world: World) -> None:
    Merchant.objects.filter(pk=world.victim.merchant.pk).update(status=Merchant.Status.SUSPENDED)
    _assert_key_refused(world, world.key_secret)


def test_test_key_cannot_reach_or_make_live_objects(world: World, settings) -> None:
    live = make_payment(world.victim.merchant, mode="live", amount=7000)
    live_link = CheckoutSession.objects.filter(pk=world.link.pk)
    live_link.update(mode="live")
    client = _bearer(world.key_secret)  # a test key of the same merchant
    assert client.get(f"/api/v1/payments/{live.public_id}").status_code == 404
    assert live.public_id not in {p["id"] for p in client.get("/api/v1/payments").json()["data"]}
    assert client.get(f"/api/v1/checkout_sessions/{world.link.public_id}").status_code == 404
    before = snapshot(world)
    expire = client.post(f"/api/v1/checkout_sessions/{world.link.public_id}/expire")
    assert expire.status_code == 404
    refund = client.post(
        "/api/v1/refunds",
        data=json.dumps({"payment": live.public_id, "reason": "x"}),
        content_type="application/json",
    )
    assert refund.status_code == 404
    # The merchant takes live payments now: a test key cannot open a live payment link.
    settings.STRIPE_SECRET_KEY = "sk_live_" + "x" * 8
    PaymentSettings.objects.update_or_create(merchant=world.victim.merchant, defaults={"gateway": "stripe"})
    before = snapshot(world)
    create = client.post(
        "/api/v1/checkout_sessions",
        data=json.dumps(
            {"amount": 100, "currency": "EUR", "description": "x", "customer_email": "a@example.com"}
        ),
        content_type="application/json",
    )
    assert 400 <= create.status_code < 500, create.status_code
    changed = changed_tables(before, snapshot(world))
    assert "payments.CheckoutSession" not in changed and "payments.Payment" not in changed, changed
    assert not CheckoutSession.objects.filter(merchant=world.victim.merchant, description="x").exists()
    assert Payment.objects.get(pk=live.pk).amount_refunded == 0


def test_live_key_cannot_reach_test_objects(world: World) -> None:
    live_key = api_key_create(
        actor=world.victim.owner, merchant=world.victim.merchant, name="live", scope="write", mode="live"
    )
    client = _bearer(live_key.secret)
    before = snapshot(world)
    assert client.get(f"/api/v1/payments/{world.payment.public_id}").status_code == 404
    assert client.get(f"/api/v1/refunds/{world.refund.public_id}").status_code == 404
    assert client.post(f"/api/v1/checkout_sessions/{world.link.public_id}/expire").status_code == 404
    after = snapshot(world)
    assert changed_tables(before, after) in ([], ["accounts.ApiKey"])  # only its last-use stamp


# --- Links that carry a secret: invitations and password resets -------------------------------------------


def _invite(world: World, email: str) -> str:
    from accounts.services import invitation_create

    issued = invitation_create(
        actor=world.victim.owner, merchant=world.victim.merchant, email=email, role=Role.ADMIN
    )
    return issued.token


def _accept(client: Client, token: str):  # noqa: ANN202 - a test response
    form = {
        "full_name": "Mole",
        "password1": "mole-horse-battery-staple-9",
        "password2": "mole-horse-battery-staple-9",
    }
    return client.post(reverse("invitation_accept", args=[token]), form)


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda t: _flip(t, len(t) - 1), id="last-char-flipped"),
        pytest.param(lambda t: _flip(t, 0), id="first-char-flipped"),
        pytest.param(lambda t: t[:-1], id="truncated-by-one"),
        pytest.param(lambda t: t[: len(t) // 2], id="truncated-to-half"),
        pytest.param(lambda t: t + "a", id="extended"),
    ],
)
def test_forged_invitation_token_joins_nobody(world: World, forge: Callable[[str], str]) -> None:
    token = _invite(world, "mole@attacker.example.com")
    before = snapshot(world)
    response = _accept(Client(), forge(token))
    assert response.status_code in (404, 410)
    assert changed_tables(before, snapshot(world)) == []
    assert not User.objects.filter(email="mole@attacker.example.com").exists()


@pytest.mark.parametrize("spoil", ["revoked", "expired", "used"])
def test_dead_invitation_token_joins_nobody(world: World, spoil: str) -> None:
    from accounts.models import Invitation
    from accounts.services import invitation_revoke

    token = _invite(world, "late@attacker.example.com")
    invitation = Invitation.objects.get(email="late@attacker.example.com")
    if spoil == "revoked":
        invitation_revoke(actor=world.victim.owner, invitation=invitation)
    elif spoil == "expired":
        Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        assert _accept(Client(), token).status_code == 302  # the invitee joins once
    before = snapshot(world)
    response = _accept(Client(), token)
    assert response.status_code in (404, 410)
    assert changed_tables(before, snapshot(world)) == []


def test_someone_elses_invitation_does_not_seat_the_outsider(world: World) -> None:
    """The outsider holds a link meant for an existing user and posts it from their own session."""
    token = _invite(world, world.outsider.teammate.email)  # sent to someone who already has an account
    outsider = verified(world.outsider.owner)
    before = snapshot(world)
    outsider.post(reverse("invitation_accept", args=[token]))
    _accept(outsider, token)
    assert changed_tables(before, snapshot(world)) == []
    assert not world.victim.merchant.memberships.filter(user=world.outsider.owner).exists()


NEW_PASSWORD = "mole-horse-battery-staple-9"


def _reset_with_key(world: World, forge: Callable[[str], str]) -> bool:
    """Follow a password-reset link whose key went through ``forge``; whether the password changed."""
    from allauth.account.forms import default_token_generator
    from allauth.account.utils import user_pk_to_url_str

    user = User.objects.get(pk=world.victim.owner.pk)  # as stored now (the shared object may be stale)
    key = forge(default_token_generator.make_token(user))
    url = reverse("account_reset_password_from_key", kwargs={"uidb36": user_pk_to_url_str(user), "key": key})
    client = Client()
    page = client.get(url, follow=True)
    form_url = page.redirect_chain[-1][0] if page.redirect_chain else url
    client.post(form_url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    user.refresh_from_db()
    return user.check_password(NEW_PASSWORD)


def test_the_real_password_reset_key_works(world: World) -> None:
    """The control for the forgeries below."""
    assert _reset_with_key(world, lambda key: key)


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda k: _flip(k, len(k) - 1), id="last-char-flipped"),
        pytest.param(lambda k: k[:-1], id="truncated-by-one"),
        pytest.param(lambda k: k + "a", id="extended"),
    ],
)
def test_forged_password_reset_key_changes_no_password(world: World, forge: Callable[[str], str]) -> None:
    before = snapshot(world)
    assert not _reset_with_key(world, forge)
    assert changed_tables(before, snapshot(world)) == []
