"""An outsider merchant, and each lower role on the victim's own team, cannot reach or change the
victim's rows through any URL; nor can an API key do more than its creator's current role.

Generated from the URL configuration (the walk in ``tests/platform/test_every_page_needs_two_factor``):
every URL with ids is filled with the victim's row (``attack_world.OBJECT_URLS``), or comes from the
admin's model registry, or is listed in ``attack_world.NOT_BUILT`` with the reason. A new URL with
ids that is none of these fails ``test_every_object_url_is_built_or_listed``.

Lower roles are generated from the one role table, ``accounts.merchant_roles.ROLE_TABLE``:
``ACTIONS`` below only says which action each state-changing URL (or API endpoint, or the download
of a full-email export) performs; who may do it is ``merchant_roles.roles_allowed(action)``, and every
other role is attacked (``test_lower_roles_cannot_act``) with a session whose second-factor code is
fresh, so a refusal is the role's and not the step-up's (the refusal must name a role, must not send
the attacker to the code page, and nothing may change). Because the attacks read the table, a widened
row would quietly widen them too: ``NEVER`` is the floor the security review set (analysts and
developers never refund, review, see full emails in an export or invite; only owners change the team;
analysts never manage links, keys, webhooks or fraud rules). Those pairs are attacked whatever the
table says, and ``test_the_role_table_keeps_the_reviews_floor`` names a row that crosses it.

Nothing is skipped silently: a merchant URL (found through its view guard) that takes a POST without
an action fails ``test_every_state_changing_merchant_url_has_a_role_table_action``; a restricted action
no URL attacks fails ``test_every_restricted_action_is_attacked``; an API view whose ``api_actions``
disagree with ``ACTIONS`` fails ``test_the_api_declares_the_actions_attacked_here``.

API keys (``test_a_key_does_no_more_than_its_creators_current_role``): for every role, every scope of
``SCOPE_ACTIONS`` and every way a key outlives its creator's power (made as an owner, then lowered by
the owner or behind the services' back; made by the member in their role through the dashboard; the
member removed), every API request beyond what the key may do is refused (403, or 401 for a revoked
key or a removed creator) and changes nothing. What the key may do is computed here from the table
(its scope's actions that the creator's current role may do, within ``NEVER``), not by
``key_actions``; what it may do goes through, so the refusals are the table's and not a dead key's
(unless lowering revoked the key, which is stricter). Minting a key beyond the role is refused at the
dashboard (``test_a_member_cannot_mint_a_key_beyond_their_role``).

Not asserted here, and why:

* Roles that *may* act are only exercised as the owner (``test_the_attack_bodies_act_for_the_owner``,
  the control); each allowed role against each action is ``tests/accounts/test_role_table.py``'s job.
* What a lower role may *see* of its own team (pages, GETs): not a change, and the table's reads are
  every role's except the full-email download, which is attacked here. GETs changing nothing is the
  CSRF suite's ``test_get_changes_nothing``.
* Which URLs need a fresh second-factor code: ``test_role_table`` and the two-factor tests. Here the
  code is always fresh, so that requirement cannot hide a role hole.
"""

from __future__ import annotations

import html
import json
from typing import Any

import pytest
from django.test import Client
from django.urls import resolve, reverse

from accounts import merchant_roles as mr
from accounts.api_auth import MerchantApiAccess
from accounts.api_keys import api_key_create, hash_secret
from accounts.merchant_roles import ROLE_TABLE, SCOPE_ACTIONS
from accounts.models import ApiKey, Membership, Role, User
from accounts.permissions import merchant_member_required
from accounts.views_developers import FRESH_KEY_SESSION
from payments import exports
from payments.merchant_webhooks import webhook_endpoint_create
from tests.conftest import make_user
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
    object_view_names,
    sample_url,
    shared_world_fixture,  # noqa: F401 - fixture
    snapshot,
    url_for,
    verified,
    world_fixture,  # noqa: F401 - fixture
)

pytestmark = pytest.mark.django_db

ROLES = sorted(Role.values)

# Each state-changing request of a merchant -> the role-table action it performs. Who may do it is
# the table's (``roles_allowed``); nothing here lists roles. A key is a URL name, or a URL name and
# the variant in brackets (``ATTACK_VARIANTS``) when one URL performs two actions.
ACTIONS: dict[str, str] = {
    "team": mr.TEAM_INVITE,
    "team [invite an owner]": mr.TEAM_INVITE_OWNER,
    "team_member_role": mr.TEAM_MANAGE,
    "team_member_remove": mr.TEAM_MANAGE,
    "invitation_revoke": mr.TEAM_INVITE,
    "api_key_create": mr.API_KEYS_MANAGE,
    "api_key_rotate": mr.API_KEYS_MANAGE,
    "api_key_revoke": mr.API_KEYS_MANAGE,
    "payment_refund": mr.PAYMENTS_REFUND,
    "payment_review_decide": mr.PAYMENTS_REVIEW,
    "payments_fraud_rule_create": mr.FRAUD_RULES_MANAGE,
    "payments_fraud_rule_edit": mr.FRAUD_RULES_MANAGE,
    "payments_fraud_rule_toggle": mr.FRAUD_RULES_MANAGE,
    "payments_fraud_rule_delete": mr.FRAUD_RULES_MANAGE,
    "webhook_endpoint_create": mr.WEBHOOKS_MANAGE,
    "webhook_endpoint_status": mr.WEBHOOKS_MANAGE,
    "webhook_endpoint_delete": mr.WEBHOOKS_MANAGE,
    "webhook_delivery_resend": mr.WEBHOOKS_MANAGE,
    "payment_links": mr.LINKS_MANAGE,
    "payment_link_detail": mr.LINKS_MANAGE,
    "payments_export_create": mr.PAYMENTS_EXPORT,
    # A GET, but it hands over customers' full emails (the world's export is the owner's, full).
    "payment_export_download": mr.PAYMENTS_EXPORT_FULL_EMAILS,
    "api_checkout_sessions": mr.LINKS_MANAGE,
    "api_checkout_session_expire": mr.LINKS_MANAGE,
    "api_refunds": mr.PAYMENTS_REFUND,
}

# The floor the security review set: roles that must never be allowed these actions, whatever the
# table says. The attacks read the table, so a widened row would widen them too; these pairs are
# attacked anyway (and test_the_role_table_keeps_the_reviews_floor names the widened row).
_LOWER = frozenset({Role.ANALYST, Role.DEVELOPER})
_NOT_OWNERS = frozenset({Role.ADMIN, Role.ANALYST, Role.DEVELOPER})
NEVER: dict[str, frozenset[str]] = {
    mr.PAYMENTS_REFUND: _LOWER,
    mr.PAYMENTS_REVIEW: _LOWER,
    mr.PAYMENTS_EXPORT_FULL_EMAILS: _LOWER,
    mr.TEAM_INVITE: _LOWER,
    mr.TEAM_INVITE_OWNER: _NOT_OWNERS,
    mr.TEAM_MANAGE: _NOT_OWNERS,
    mr.FRAUD_RULES_MANAGE: _LOWER,
    mr.LINKS_MANAGE: frozenset({Role.ANALYST}),
    mr.API_KEYS_MANAGE: frozenset({Role.ANALYST}),
    mr.WEBHOOKS_MANAGE: frozenset({Role.ANALYST}),
}


def may(role: str | None, action: str) -> bool:
    """What the attacks expect a role to be let do: the table's answer, never above the floor."""
    return mr.role_can(role, action) and role not in NEVER.get(action, frozenset())


# Attacks that are one URL's second action: attack name -> (URL name, body).
ATTACK_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "team [invite an owner]": ("team", {"email": "mole.owner@attacker.example.com", "role": Role.OWNER}),
}
# Attacks made with a GET (the rest are POSTs).
GET_ATTACKS = frozenset({"payment_export_download"})

# Refusals that are not ``merchant_roles.refusal``'s sentence, but still say it is the role.
OTHER_REFUSALS = ("Only an owner can invite another owner.", exports.FULL_EMAILS_REFUSAL)

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


def _is_api(url: str) -> bool:
    return url.startswith("/api/")


def _post(client: Client, url: str, body: dict[str, Any]):  # noqa: ANN202 - a test response
    if _is_api(url):
        return client.post(url, data=json.dumps(body), content_type="application/json")
    return client.post(url, body)


def _url_name(attack: str) -> str:
    return ATTACK_VARIANTS[attack][0] if attack in ATTACK_VARIANTS else attack


def _body(world: World, attack: str) -> dict[str, Any]:
    if attack in ATTACK_VARIANTS:
        return dict(ATTACK_VARIANTS[attack][1])
    if attack in POST_BODIES:
        return POST_BODIES[attack](world)
    if attack in FORM_ACTIONS:
        body = dict(FORM_ACTIONS[attack][1])
        if attack == "api_refunds":
            body["payment"] = world.payment.public_id
        return body
    return {}


def _url(world: World, attack: str) -> str:
    view_name = _url_name(attack)
    if view_name in FORM_ACTIONS:
        return reverse(view_name, kwargs=FORM_ACTIONS[view_name][0])
    return url_for(world, view_name)


def _attack(client: Client, world: World, attack: str):  # noqa: ANN202 - a test response
    if attack in GET_ATTACKS:
        return client.get(_url(world, attack))
    return _post(client, _url(world, attack), _body(world, attack))


def _shown_refusal(client: Client, response: Any) -> str:  # noqa: ANN401 - a test response
    """What the refused person is told: the JSON error, the page, or the page a redirect leads to."""
    if response.get("Content-Type", "").startswith("application/json"):
        return str(response.json()["error"]["message"])
    if response.status_code == 302:
        location = response["Location"]
        assert not location.startswith(reverse("two_factor_step_up")), "refused by the step-up, not the role"
        assert location.startswith("/") and not location.startswith("//"), location
        response = client.get(location)
    if getattr(response, "streaming", False):
        return ""
    return html.unescape(response.content.decode())


def _names_a_role_refusal(text: str, role: str | None) -> bool:
    sentences = {mr.refusal(role, action) for action in ROLE_TABLE} | set(OTHER_REFUSALS)
    return any(sentence in text for sentence in sentences)


_GUARD_CODE = merchant_member_required()(lambda request: request).__code__


def _is_merchant_view(view_name: str) -> bool:
    """Whether the URL's view is behind the merchant role guard (a dashboard view or the merchant API)."""
    func: Any = resolve(sample_url(view_name)).func
    view_class = getattr(func, "cls", None)
    if view_class is not None:
        return MerchantApiAccess in getattr(view_class, "permission_classes", [])
    while func is not None:
        if getattr(func, "__code__", None) is _GUARD_CODE:
            return True
        func = getattr(func, "__wrapped__", None)
    return False


MERCHANT_VIEWS = sorted(n for n in VIEW_NAMES if not is_admin(n) and _is_merchant_view(n))
API_VIEWS = [n for n in MERCHANT_VIEWS if getattr(resolve(sample_url(n)).func, "cls", None) is not None]


# --- Nothing is skipped silently --------------------------------------------------------------------


def test_every_object_url_is_built_or_listed() -> None:
    unlisted = [
        n for n in object_view_names() if n not in OBJECT_URLS and n not in NOT_BUILT and not is_admin(n)
    ]
    assert not unlisted, f"URLs with ids the attack suite neither builds nor lists: {unlisted}"
    attacked = {_url_name(a) for a in ACTIONS}
    stale = sorted((set(OBJECT_URLS) | set(NOT_BUILT) | attacked) - set(VIEW_NAMES))
    assert not stale, f"attack tables name URLs that no longer exist: {stale}"


def test_every_state_changing_url_has_a_role_rule() -> None:
    missing = sorted((set(POST_BODIES) | set(FORM_ACTIONS)) - set(ACTIONS))
    assert not missing, f"state-changing URLs without a role-table action: {missing}"
    unknown = sorted(a for a in ACTIONS.values() if a not in mr.ACTIONS)
    assert not unknown, f"actions the role table does not know: {unknown}"


def test_every_state_changing_merchant_url_has_a_role_table_action(world: World) -> None:
    """Every URL behind the merchant guard that a POST does not bounce (405, or the API's 403 for a
    method its view declares no action for) is an action in ACTIONS, or a page that reads a POST like
    a GET (POST_READS) and then changes nothing."""
    assert len(MERCHANT_VIEWS) > 30 and "api_refunds" in MERCHANT_VIEWS and "team" in MERCHANT_VIEWS
    owner = verified(world.victim.owner)
    attacked = {_url_name(a) for a in ACTIONS}
    unmapped = []
    for view_name in MERCHANT_VIEWS:
        if view_name in attacked:
            continue
        before = snapshot(world)
        response = _post(owner, url_for(world, view_name), {})
        if view_name in API_VIEWS and response.status_code == 403:
            # The API refuses a method its view declares no action for (fail closed).
            assert response.json()["error"]["message"] == "This endpoint does not accept that method."
        elif response.status_code != METHOD_NOT_ALLOWED:
            assert changed_tables(before, snapshot(world)) == [], view_name
            if view_name not in POST_READS:
                unmapped.append(view_name)
    assert not unmapped, f"merchant URLs that take a POST but have no role-table action: {unmapped}"


def test_every_restricted_action_is_attacked() -> None:
    """Each action of the role table that some role may not do is attacked through some URL."""
    restricted = {a for a, row in ROLE_TABLE.items() if row.roles != mr.EVERYONE}
    missing = sorted(restricted - set(ACTIONS.values()))
    assert not missing, f"restricted actions no attack covers: {missing}"


def test_the_api_declares_the_actions_attacked_here() -> None:
    """The API's own ``api_actions`` (what ``MerchantApiAccess`` checks) agree with ACTIONS."""
    for view_name in API_VIEWS:
        declared = getattr(resolve(sample_url(view_name)).func.cls, "api_actions", {})
        assert declared.get("POST") == ACTIONS.get(view_name), view_name
        assert set(declared) <= {"POST"}, (view_name, declared)


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


@pytest.mark.parametrize("attack", sorted(ACTIONS))
def test_the_attack_bodies_act_for_the_owner(world: World, attack: str) -> None:
    """The control: the same request from the victim's owner does change something, so a refusal
    below is a refusal of the act and not of a malformed request."""
    owner = verified(world.victim.owner)
    before = snapshot(world)
    response = _attack(owner, world, attack)
    assert response.status_code < 400, (attack, response.status_code, response.content[:300])
    assert changed_tables(before, snapshot(world)), f"{attack}: the owner's request changed nothing"


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
    (attack, role) for attack, action in sorted(ACTIONS.items()) for role in ROLES if not may(role, action)
]


def test_the_role_table_keeps_the_reviews_floor() -> None:
    widened = sorted((a, r) for a, roles in NEVER.items() for r in roles if mr.role_can(r, a))
    assert not widened, f"the role table lets these roles do what the review closed: {widened}"


@pytest.mark.parametrize(("attack", "role"), LOWER_ROLE_CASES)
def test_lower_roles_cannot_act(world: World, attack: str, role: str) -> None:
    client = verified(member(world, role))  # a code entered just now: only the role can refuse
    before = snapshot(world)
    response = _attack(client, world, attack)
    assert response.status_code in {302, 400, 403}, (attack, role, response.status_code)
    assert changed_tables(before, snapshot(world)) == [], (attack, role)
    assert _names_a_role_refusal(_shown_refusal(client, response), role), (attack, role)


# --- API keys that outlive their creator's power ------------------------------------------------------

# Every request the merchant API takes: (URL name, method, the action the table checks). Reads are
# ``payments.view`` (``accounts.api_auth.required_action``); writes are ACTIONS' (which
# test_the_api_declares_the_actions_attacked_here keeps equal to the views' ``api_actions``).
API_REQUESTS = [
    (name, "get", mr.PAYMENTS_VIEW)
    for name in API_VIEWS
    if hasattr(resolve(sample_url(name)).func.cls, "get")
] + [(name, "post", ACTIONS[name]) for name in API_VIEWS if name in ACTIONS]

LOWERED = "made as an owner, lowered by the owner"
LOWERED_BEHIND = "made as an owner, lowered behind the services' back"
MADE_IN_ROLE = "made by the member in their role (dashboard)"
REMOVED = "made as an owner, member removed by the owner"

KEY_CASES = [
    *[
        (how, role, scope)
        for how in (LOWERED, LOWERED_BEHIND)
        for role in ROLES
        if role != Role.OWNER
        for scope in sorted(SCOPE_ACTIONS)
    ],
    *[
        (MADE_IN_ROLE, role, scope)
        for role in ROLES
        for scope in sorted(SCOPE_ACTIONS)
        if scope in mr.scopes_for(role) and mr.role_can(role, mr.API_KEYS_MANAGE)
    ],
    *[(REMOVED, "", scope) for scope in sorted(SCOPE_ACTIONS)],
]


def _key_maker(world: World, role: str) -> tuple[User, Membership]:
    user = make_user(f"key.maker.{role or 'gone'}@victim.example.com")
    membership = Membership.objects.create(user=user, merchant=world.victim.merchant, role=role or Role.OWNER)
    return user, membership


def _key_in_power(world: World, how: str, role: str, scope: str) -> str:
    """A key of ``scope`` whose creator is now ``role`` (or gone), made the way ``how`` says."""
    if how == MADE_IN_ROLE:
        user, _ = _key_maker(world, role)
        client = verified(user)
        body = {"name": "mine", "scope": scope, "mode": ApiKey.Mode.TEST, "lifetime_days": "90"}
        assert client.post(reverse("api_key_create"), body).status_code == 302, (role, scope)
        return str(client.session[FRESH_KEY_SESSION]["secret"])
    user, membership = _key_maker(world, Role.OWNER)
    secret = api_key_create(actor=user, merchant=world.victim.merchant, name="ops", scope=scope).secret
    owner = verified(world.victim.owner)
    if how == LOWERED:
        owner.post(reverse("team_member_role", kwargs={"membership_id": membership.pk}), {"role": role})
        assert Membership.objects.get(pk=membership.pk).role == role
    elif how == LOWERED_BEHIND:
        Membership.objects.filter(pk=membership.pk).update(role=role)
    else:
        owner.post(reverse("team_member_remove", kwargs={"membership_id": membership.pk}))
        assert not Membership.objects.filter(pk=membership.pk).exists()
    return secret


def _api_call(world: World, secret: str, name: str, method: str):  # noqa: ANN202 - a test response
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    url = _url(world, name)
    return client.get(url) if method == "get" else _post(client, url, _body(world, name))


@pytest.mark.parametrize(("how", "role", "scope"), KEY_CASES)
def test_a_key_does_no_more_than_its_creators_current_role(world: World, how: str, role: str, scope: str):
    secret = _key_in_power(world, how, role, scope)
    # No more than the key's scope and what the table lets the creator's current role do (computed
    # here from the table, not by ``key_actions``, so a key that ignores its creator's role fails).
    allowed = frozenset(a for a in SCOPE_ACTIONS[scope] if may(role or None, a))
    if ApiKey.objects.filter(secret_hash=hash_secret(secret), revoked_at__isnull=False).exists():
        allowed = frozenset()  # lowering to a role that may not hold keys revokes them: even stricter
    refused = [(n, m, a) for n, m, a in API_REQUESTS if a not in allowed]
    before = snapshot(world)
    for name, method, _action in refused:
        response = _api_call(world, secret, name, method)
        assert response.status_code in {401, 403}, (name, method, response.status_code)
    assert changed_tables(before, snapshot(world)) == [], (how, role, scope)
    # What the table still lets the key do goes through: the refusals above were the table's.
    for name, method, action in API_REQUESTS:
        if action in allowed:
            response = _api_call(world, secret, name, method)
            assert response.status_code < 400, (name, method, response.status_code, response.content[:200])


def test_the_key_attacks_include_a_developer_refunding_with_a_write_key_they_minted() -> None:
    assert (MADE_IN_ROLE, Role.DEVELOPER, ApiKey.Scope.WRITE) in KEY_CASES
    assert ("api_refunds", "post", mr.PAYMENTS_REFUND) in API_REQUESTS
    assert not may(Role.DEVELOPER, mr.PAYMENTS_REFUND)


MINT_CASES = [
    (role, scope)
    for role in ROLES
    for scope in sorted(SCOPE_ACTIONS)
    if scope not in mr.scopes_for(role) or not mr.role_can(role, mr.API_KEYS_MANAGE)
]


@pytest.mark.parametrize(("role", "scope"), MINT_CASES)
def test_a_member_cannot_mint_a_key_beyond_their_role(world: World, role: str, scope: str) -> None:
    client = verified(member(world, role))
    before = snapshot(world)
    body = {"name": "mole", "scope": scope, "mode": ApiKey.Mode.TEST, "lifetime_days": "90"}
    response = client.post(reverse("api_key_create"), body)
    assert response.status_code in {400, 403}, (role, scope, response.status_code)
    assert FRESH_KEY_SESSION not in client.session
    assert changed_tables(before, snapshot(world)) == [], (role, scope)
