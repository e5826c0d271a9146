"""An outsider merchant, and each lower role on the victim's own team, cannot reach or change the
victim's rows through any URL.

Generated from the URL configuration (the walk in ``tests/platform/test_every_page_needs_two_factor``):
every URL with ids is filled with the victim's row (``attack_world.OBJECT_URLS``), or comes from the
admin's model registry, or is listed in ``attack_world.NOT_BUILT`` with the reason. A new URL with
ids that is none of these fails ``test_every_object_url_is_built_or_listed``.

Lower roles (``accounts.models.Role``), per state-changing action, as today's code decides:

=============================  ======================  ============================================
action (URL name)              roles that may act      refused today (asserted below)
=============================  ======================  ============================================
team_member_role               owner                   admin, analyst, developer
team_member_remove             owner                   admin, analyst, developer
invitation_revoke              owner, admin            analyst, developer
team (POST: invite)            owner, admin            analyst, developer
api_key_create/rotate/revoke   owner, admin, developer analyst
payment_refund                 owner, admin            analyst, developer
payment_review_decide          owner, admin            analyst, developer
payments_fraud_rule_*          owner, admin            analyst, developer
webhook_endpoint_* / resend    owner, admin, developer analyst
api_checkout_sessions (POST)   owner, admin, developer analyst
api_checkout_session_expire    owner, admin, developer analyst
api_refunds (POST)             owner, admin            analyst, developer
payment_link_detail (POST)     every role              (none: see below)
payment_links (POST: create)   every role              (none: see below)
payments_export_create         every role              (none: see below)
=============================  ======================  ============================================

Not asserted, because today's code lets the role do it (findings for the role table, item 5/8b):

* ``payment_link_detail`` POST (expire a payment link) and ``payment_links`` POST (create one):
  analysts and developers may, although the API treats an analyst's session as read-only
  (``api_checkout_sessions`` / ``api_checkout_session_expire`` refuse the same analyst).
* ``payments_export_create`` (and the export pages): every role, including developers and analysts,
  may export the payments list with customer emails, and download an export another member made.
* Refunds through an API key: a developer is refused ``payment_refund`` and ``api_refunds`` from
  the dashboard session, but may mint a write-scoped key (``api_key_create``) and refund with it
  (``api_refunds`` lets every write key refund). Keys a removed member minted keep working.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Role
from payments.merchant_webhooks import webhook_endpoint_create
from tests.payments.webhook_helpers import dns  # noqa: F401 - fixture
from tests.security.attack_world import (
    METHOD_NOT_ALLOWED,
    NOT_BUILT,
    OBJECT_URLS,
    POST_BODIES,
    POST_READS,
    REFUSED,
    VIEW_NAMES,
    World,
    changed_tables,
    is_admin,
    member,
    module_world,
    object_view_names,
    snapshot,
    url_for,
    verified,
)

pytestmark = pytest.mark.django_db

ALL_ROLES = frozenset(Role.values)
OWNER_ADMIN = frozenset({Role.OWNER, Role.ADMIN})
KEY_MANAGERS = frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER})

# Who may do each state-changing action today (see the module docstring's table).
ROLE_TABLE: dict[str, frozenset[str]] = {
    "team_member_role": frozenset({Role.OWNER}),
    "team_member_remove": frozenset({Role.OWNER}),
    "invitation_revoke": OWNER_ADMIN,
    "team": OWNER_ADMIN,
    "api_key_create": KEY_MANAGERS,
    "api_key_rotate": KEY_MANAGERS,
    "api_key_revoke": KEY_MANAGERS,
    "payment_refund": OWNER_ADMIN,
    "payment_review_decide": OWNER_ADMIN,
    "payments_fraud_rule_create": OWNER_ADMIN,
    "payments_fraud_rule_edit": OWNER_ADMIN,
    "payments_fraud_rule_toggle": OWNER_ADMIN,
    "payments_fraud_rule_delete": OWNER_ADMIN,
    "webhook_endpoint_create": KEY_MANAGERS,
    "webhook_endpoint_status": KEY_MANAGERS,
    "webhook_endpoint_delete": KEY_MANAGERS,
    "webhook_delivery_resend": KEY_MANAGERS,
    "api_checkout_sessions": KEY_MANAGERS,
    "api_checkout_session_expire": KEY_MANAGERS,
    "api_refunds": OWNER_ADMIN,
    # Every role today; see "Not asserted" in the module docstring.
    "payment_link_detail": ALL_ROLES,
    "payment_links": ALL_ROLES,
    "payments_export_create": ALL_ROLES,
}

# State-changing URLs without ids: their URL kwargs and the body that makes them act.
FORM_ACTIONS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "team": ({}, {"email": "mole@attacker.example.com", "role": Role.ADMIN}),
    "api_key_create": ({}, {"name": "mole", "scope": "write", "mode": "test", "lifetime_days": "90"}),
    "payments_fraud_rule_create": (
        {"kind": "max_amount"},
        {"label": "Mole", "action": "block", "enabled": "on", "amount": "1.00", "currency": "EUR"},
    ),
    "webhook_endpoint_create": ({}, {"url": "https://public.example.com/hooks/mole", "description": "mole"}),
    "api_checkout_sessions": (
        {},
        {"amount": 100, "currency": "EUR", "description": "mole", "customer_email": "m@example.com"},
    ),
    "api_refunds": ({}, {"payment": None, "amount": 100, "reason": "mole"}),  # payment: the victim's
    "payment_links": ({}, {"amount": "1.00", "currency": "EUR", "expires_in_minutes": "1440"}),
    "payments_export_create": ({}, {}),
}


@pytest.fixture(scope="module")
def shared_world(django_db_setup, django_db_blocker) -> Iterator[World]:  # noqa: ANN001
    """One victim world for the module; each test's changes are rolled back to its savepoint."""
    with module_world(django_db_blocker) as world:
        yield world


@pytest.fixture
def world(shared_world: World, db: None, dns) -> World:  # noqa: F811 - the fixture imported above
    return shared_world


def _is_api(url: str) -> bool:
    return url.startswith("/api/")


def _post(client: Client, url: str, body: dict[str, Any]):  # noqa: ANN202 - a test response
    if _is_api(url):
        return client.post(url, data=json.dumps(body), content_type="application/json")
    return client.post(url, body)


def _body(world: World, view_name: str) -> dict[str, Any]:
    if view_name in POST_BODIES:
        return POST_BODIES[view_name](world)
    if view_name in FORM_ACTIONS:
        body = dict(FORM_ACTIONS[view_name][1])
        if view_name == "api_refunds":
            body["payment"] = world.payment.public_id
        return body
    return {}


def _url(world: World, view_name: str) -> str:
    if view_name in FORM_ACTIONS:
        return reverse(view_name, kwargs=FORM_ACTIONS[view_name][0])
    return url_for(world, view_name)


# --- Nothing is skipped silently --------------------------------------------------------------------


def test_every_object_url_is_built_or_listed() -> None:
    unlisted = [
        n for n in object_view_names() if n not in OBJECT_URLS and n not in NOT_BUILT and not is_admin(n)
    ]
    assert not unlisted, f"URLs with ids the attack suite neither builds nor lists: {unlisted}"
    stale = sorted((set(OBJECT_URLS) | set(NOT_BUILT) | set(ROLE_TABLE)) - set(VIEW_NAMES))
    assert not stale, f"attack tables name URLs that no longer exist: {stale}"


def test_every_state_changing_url_has_a_role_rule() -> None:
    missing = sorted((set(POST_BODIES) | set(FORM_ACTIONS)) - set(ROLE_TABLE))
    assert not missing, f"state-changing URLs without a role rule: {missing}"


def test_every_object_url_that_takes_a_post_has_an_attack_body(world: World) -> None:
    """A POST the owner's session is not refused acts on the row (it needs a body in POST_BODIES),
    or is read as a GET (POST_READS, and then it changes nothing)."""
    owner = verified(world.victim.owner)
    takes_post = []
    for view_name in OBJECT_URLS:
        if view_name in POST_BODIES:
            continue
        before = snapshot(world)
        response = owner.post(url_for(world, view_name))
        if response.status_code not in REFUSED | {METHOD_NOT_ALLOWED}:
            takes_post.append(view_name)
            assert changed_tables(before, snapshot(world)) == [], view_name
    missing = sorted(set(takes_post) - POST_READS)
    assert not missing, f"object URLs that take a POST but have no attack body: {missing}"


@pytest.mark.parametrize("view_name", sorted(set(POST_BODIES) | set(FORM_ACTIONS)))
def test_the_attack_bodies_act_for_the_owner(world: World, view_name: str) -> None:
    """The control: the same request from the victim's owner does change something, so a refusal
    below is a refusal of the act and not of a malformed request."""
    owner = verified(world.victim.owner)
    before = snapshot(world)
    response = _post(owner, _url(world, view_name), _body(world, view_name))
    assert response.status_code < 400, (view_name, response.status_code, response.content[:300])
    assert changed_tables(before, snapshot(world)), f"{view_name}: the owner's request changed nothing"


# --- An outsider merchant ------------------------------------------------------------------------------

OUTSIDER_TARGETS = sorted(n for n in OBJECT_URLS)


@pytest.mark.parametrize("view_name", OUTSIDER_TARGETS)
def test_outsider_cannot_reach_the_victims_object(world: World, view_name: str) -> None:
    url = url_for(world, view_name)
    clients = {"outsider session": verified(world.outsider.owner)}
    if _is_api(url):
        clients["outsider API key"] = Client(HTTP_AUTHORIZATION=f"Bearer {world.outsider_key_secret}")
    before = snapshot(world)
    for who, client in clients.items():
        got = client.get(url)
        assert got.status_code in REFUSED | {METHOD_NOT_ALLOWED}, (who, "GET", url, got.status_code)
        posted = _post(client, url, _body(world, view_name))
        assert posted.status_code in REFUSED | {METHOD_NOT_ALLOWED}, (who, "POST", url, posted.status_code)
        for response in (got, posted):
            assert world.payment.public_id.encode() not in response.content
            assert world.victim.owner.email.encode() not in response.content
    assert changed_tables(before, snapshot(world)) == [], view_name


def test_outsider_cannot_use_the_admin_on_the_victims_rows(world: World) -> None:
    """Every admin URL, filled with the victim's row of its model: a merchant user is not let in."""
    outsider = verified(world.outsider.owner)
    admin_login = reverse("admin:login")
    admin_index = reverse("admin:index")
    before = snapshot(world)
    admin_names = [n for n in VIEW_NAMES if is_admin(n) and n != "admin:login"]
    assert len(admin_names) > 40
    for view_name in admin_names:
        url = url_for(world, view_name)
        for method in ("get", "post"):
            response = getattr(outsider, method)(url)
            if response.status_code == 302:
                # Sent to the admin's sign-in (or, from its sign-out, to its index, which does the same).
                location = response["Location"]
                assert location.startswith(admin_login) or location == admin_index, (
                    view_name,
                    method,
                    location,
                )
            else:
                assert response.status_code in REFUSED, (view_name, method, response.status_code)
    # The admin's sign-in page refuses a signed-in merchant user outright.
    assert outsider.get(admin_login).status_code == 403
    assert changed_tables(before, snapshot(world)) == []


def test_outsider_cannot_reach_the_victims_rows_through_list_filters_or_bodies(world: World) -> None:
    api_key = Client(HTTP_AUTHORIZATION=f"Bearer {world.outsider_key_secret}")
    session = verified(world.outsider.owner)
    before = snapshot(world)
    for client in (api_key, session):
        for url in (
            f"/api/v1/payments?checkout_session={world.payment.checkout_session.public_id}",
            f"/api/v1/refunds?payment={world.payment.public_id}",
            "/api/v1/payments",
            "/api/v1/checkout_sessions",
            "/api/v1/refunds",
        ):
            response = client.get(url)
            assert response.status_code == 200 and response.json()["data"] == [], url
        refund = _post(client, "/api/v1/refunds", {"payment": world.payment.public_id, "reason": "mole"})
        assert refund.status_code in REFUSED, refund.status_code
    # The dashboard's lists and the team page show none of the victim's rows either.
    pages = ("/payments/", "/payments/links/", "/payments/exports/", "/team/", "/developers/", "/audit/")
    for url in (
        *pages,
        "/audit/export.csv",
        "/developers/webhooks/",
        "/payments/review/",
        "/payments/disputes/",
    ):
        body = session.get(url).content
        assert world.payment.public_id.encode() not in body and world.link.public_id.encode() not in body
        assert world.victim.owner.email.encode() not in body, url
    assert changed_tables(before, snapshot(world)) == []


def test_outsider_cannot_pair_their_own_ids_with_the_victims(world: World) -> None:
    """A URL with two ids: the outsider's own endpoint with the victim's delivery."""
    own = webhook_endpoint_create(
        actor=world.outsider.owner,
        merchant=world.outsider.merchant,
        url="https://public.example.com/hooks/own",
    ).endpoint
    outsider = verified(world.outsider.owner)
    before = snapshot(world)
    for name in ("webhook_delivery_detail", "webhook_delivery_resend"):
        url = reverse(name, kwargs={"public_id": own.public_id, "delivery_id": world.delivery.public_id})
        assert outsider.get(url).status_code in REFUSED | {METHOD_NOT_ALLOWED}, name
        assert outsider.post(url).status_code in REFUSED, name
    assert changed_tables(before, snapshot(world)) == []


def test_outsider_reusing_the_victims_idempotency_key_gets_nothing_of_the_victims(world: World) -> None:
    body = json.dumps(
        {"amount": 4200, "currency": "EUR", "description": "Order 7", "customer_email": "c@example.com"}
    )
    headers = {"HTTP_IDEMPOTENCY_KEY": "order-7", "content_type": "application/json"}
    victims = Client(HTTP_AUTHORIZATION=f"Bearer {world.key_secret}").post(
        "/api/v1/checkout_sessions", body, **headers
    )
    assert victims.status_code == 201
    before = snapshot(world)
    theirs = Client(HTTP_AUTHORIZATION=f"Bearer {world.outsider_key_secret}").post(
        "/api/v1/checkout_sessions", body, **headers
    )
    assert victims.json()["id"] not in theirs.content.decode()
    assert theirs.headers.get("Idempotent-Replayed") != "true"
    assert changed_tables(before, snapshot(world)) == []


def test_outsider_cannot_switch_into_the_victims_merchant(world: World) -> None:
    outsider = verified(world.outsider.owner)
    before = snapshot(world)
    outsider.post(reverse("switch_merchant"), {"merchant": world.victim.merchant.public_id})
    assert outsider.session.get("current_merchant") != world.victim.merchant.public_id
    assert outsider.get(url_for(world, "payment_detail")).status_code in REFUSED
    assert changed_tables(before, snapshot(world)) == []


# --- Lower roles on the victim's own team ----------------------------------------------------------------

LOWER_ROLE_CASES = [
    (view_name, role)
    for view_name, allowed in sorted(ROLE_TABLE.items())
    for role in Role.values
    if role not in allowed
]


@pytest.mark.parametrize(("view_name", "role"), LOWER_ROLE_CASES)
def test_lower_roles_cannot_act(world: World, view_name: str, role: str) -> None:
    client = verified(member(world, role))
    url = _url(world, view_name)
    before = snapshot(world)
    response = _post(client, url, _body(world, view_name))
    if view_name == "team":
        # Today the team page answers a refused invitation with a redirect and a message.
        assert response.status_code in REFUSED | {302}, (role, response.status_code)
    else:
        assert response.status_code in REFUSED, (view_name, role, response.status_code)
    assert changed_tables(before, snapshot(world)) == [], (view_name, role)
