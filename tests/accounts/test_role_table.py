"""The one role table: each role against each action, in the dashboard, the session API and keys.

The cases are generated from ``accounts.merchant_roles.ROLE_TABLE`` and ``Role``: a role or an
action added to the table is covered here (an action without a dashboard probe fails the
``every action has a probe`` test). Each probe performs the action the way a person would and
reports whether it went through (the row changed, or the page opened); the expectation is the
table's answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.test import Client

from accounts import merchant_roles
from accounts.api_keys import api_key_create
from accounts.merchant_roles import ROLE_TABLE, SCOPE_ACTIONS, key_can, role_can
from accounts.models import ApiKey, Invitation, Membership, Role, User
from accounts.otp import OTP_VERIFIED_AT
from payments import exports, fraud_rules
from payments.models import CheckoutSession, Payment, PaymentExport, Refund, WebhookEndpoint
from security.errors import ApplicationError
from tests.conftest import login_verified, make_user
from tests.payments.api_helpers import call, succeeded_payment
from tests.payments.dashboard_helpers import make_payment
from tests.payments.webhook_helpers import dns  # noqa: F401  (fixture: no real DNS)

pytestmark = pytest.mark.django_db

ROLES = sorted(Role.values)


@dataclass
class World:
    tenant: object
    member: User  # the person under test, in the role under test
    client: Client


def member_in(tenant, role: str) -> User:
    if role == Role.OWNER:
        return tenant.owner
    user = make_user(f"{role}-probe@alpha.example.com")
    Membership.objects.create(user=user, merchant=tenant.merchant, role=role)
    return user


# --- Dashboard probes: (world) -> did it go through? ----------------------------------------------


def _page_opens(path: str) -> Callable[[World], bool]:
    def probe(w: World) -> bool:
        status = w.client.get(path).status_code
        assert status in (200, 403), status
        return status == 200

    return probe


def _refund(w: World) -> bool:
    payment = succeeded_payment(w.tenant)
    w.client.post(
        f"/payments/{payment.public_id}/refund/",
        {"amount": "", "reason": "Asked", "refund_id": "re_" + "a" * 24},
    )
    return Refund.objects.filter(payment=payment).exists()


def _review(w: World) -> bool:
    payment = make_payment(w.tenant.merchant, review_status=Payment.Review.PENDING)
    w.client.post(f"/payments/{payment.public_id}/review/", {"decision": "keep", "reason": "Known buyer"})
    payment.refresh_from_db()
    return payment.review_status != Payment.Review.PENDING


def _export(w: World) -> bool:
    w.client.post("/payments/export/", {})
    return PaymentExport.objects.filter(requested_by=w.member).exists()


def _download_full_emails(w: World) -> bool:
    make_payment(w.tenant.merchant, email="jane@example.com")
    export = exports.payment_export_create(
        actor=w.tenant.owner, merchant=w.tenant.merchant, role=Role.OWNER, raw_filters={}
    )
    exports.payment_export_run(export_pk=export.pk)
    response = w.client.get(f"/payments/exports/{export.public_id}/download/")
    assert response.status_code in (200, 403)
    if response.status_code == 200:
        assert b"jane@example.com" in b"".join(response.streaming_content)
    return response.status_code == 200


def _make_link(w: World) -> bool:
    w.client.post("/payments/links/", {"amount": "12.00", "currency": "EUR", "expires_in_minutes": "60"})
    return CheckoutSession.objects.filter(created_by=w.member).exists()


def _fraud_rule_toggle(w: World) -> bool:
    rule = fraud_rules.fraud_rule_create(
        actor=w.tenant.owner,
        merchant=w.tenant.merchant,
        kind="max_amount",
        parameters={"currency": "EUR", "amount": 5000},
        action="review",
        label="Big orders",
    )
    w.client.post(f"/payments/fraud-rules/{rule.public_id}/toggle/", {"enabled": "0"})
    rule.refresh_from_db()
    return not rule.enabled


def _invite(role: str) -> Callable[[World], bool]:
    def probe(w: World) -> bool:
        w.client.post("/team/", {"email": f"new-{role}@example.com", "role": role})
        return Invitation.objects.filter(email=f"new-{role}@example.com").exists()

    return probe


def _change_role(w: World) -> bool:
    target = Membership.objects.get(user=w.tenant.teammate, merchant=w.tenant.merchant)
    w.client.post(f"/team/members/{target.pk}/role/", {"role": Role.DEVELOPER})
    target.refresh_from_db()
    return target.role == Role.DEVELOPER


def _create_key(w: World) -> bool:
    w.client.post(
        "/developers/keys/new/", {"name": "probe", "scope": "read", "mode": "test", "lifetime_days": 90}
    )
    return ApiKey.objects.filter(created_by=w.member).exists()


def _add_webhook(w: World) -> bool:
    w.client.post("/developers/webhooks/new/", {"url": "https://public.example.com/hooks"})
    return WebhookEndpoint.objects.exists()


DASHBOARD: dict[str, Callable[[World], bool]] = {
    merchant_roles.PAYMENTS_VIEW: _page_opens("/payments/"),
    merchant_roles.PAYMENTS_REFUND: _refund,
    merchant_roles.PAYMENTS_REVIEW: _review,
    merchant_roles.PAYMENTS_EXPORT: _export,
    merchant_roles.PAYMENTS_EXPORT_FULL_EMAILS: _download_full_emails,
    merchant_roles.LINKS_MANAGE: _make_link,
    merchant_roles.DISPUTES_VIEW: _page_opens("/payments/disputes/"),
    merchant_roles.FRAUD_RULES_MANAGE: _fraud_rule_toggle,
    merchant_roles.TEAM_VIEW: _page_opens("/team/"),
    merchant_roles.TEAM_INVITE: _invite(Role.ANALYST),
    merchant_roles.TEAM_INVITE_OWNER: _invite(Role.OWNER),
    merchant_roles.TEAM_MANAGE: _change_role,
    merchant_roles.API_KEYS_MANAGE: _create_key,
    merchant_roles.WEBHOOKS_MANAGE: _add_webhook,
}


def test_every_action_in_the_table_has_a_dashboard_probe():
    assert set(DASHBOARD) == set(ROLE_TABLE)


@pytest.mark.parametrize("action", sorted(ROLE_TABLE))
@pytest.mark.parametrize("role", ROLES)
def test_each_role_against_each_action_in_the_dashboard(role, action, tenant, dns):  # noqa: F811
    member = member_in(tenant, role)
    world = World(tenant=tenant, member=member, client=login_verified(Client(), member))
    assert DASHBOARD[action](world) is role_can(role, action)


# --- The API: a team session and an API key --------------------------------------------------------


def _api_view(w: World, auth: dict) -> bool:
    response = call("GET", "/api/v1/payments", **auth)
    assert response.status_code in (200, 403), response.content
    return response.status_code == 200


def _api_link(w: World, auth: dict) -> bool:
    response = call("POST", "/api/v1/checkout_sessions", body={"amount": 700, "currency": "EUR"}, **auth)
    assert response.status_code in (201, 403), response.content
    return CheckoutSession.objects.filter(created_via="api").exists()


def _api_refund(w: World, auth: dict) -> bool:
    payment = succeeded_payment(w.tenant)
    response = call("POST", "/api/v1/refunds", body={"payment": payment.public_id, "reason": "Asked"}, **auth)
    assert response.status_code in (201, 403), response.content
    return Refund.objects.filter(payment=payment).exists()


API: dict[str, Callable[[World, dict], bool]] = {
    merchant_roles.PAYMENTS_VIEW: _api_view,
    merchant_roles.LINKS_MANAGE: _api_link,
    merchant_roles.PAYMENTS_REFUND: _api_refund,
}
API_ACTIONS = sorted(set().union(*SCOPE_ACTIONS.values()))


def test_every_action_the_api_reaches_has_an_api_probe():
    assert set(API) == set(API_ACTIONS)


@pytest.mark.parametrize("action", API_ACTIONS)
@pytest.mark.parametrize("role", ROLES)
def test_each_role_against_each_action_in_the_session_api(role, action, tenant):
    member = member_in(tenant, role)
    world = World(tenant=tenant, member=member, client=login_verified(Client(), member))
    assert API[action](world, {"client": world.client}) is role_can(role, action)


@pytest.mark.parametrize("scope", sorted(SCOPE_ACTIONS))
@pytest.mark.parametrize("action", API_ACTIONS)
@pytest.mark.parametrize("role", ROLES)
def test_a_key_acts_within_its_scope_and_its_creators_current_role(role, action, scope, tenant):
    """The key was made when its creator was an owner; the creator is now ``role``."""
    member = make_user("key-maker@alpha.example.com")
    Membership.objects.create(user=member, merchant=tenant.merchant, role=Role.OWNER)
    secret = api_key_create(actor=member, merchant=tenant.merchant, name="k", scope=scope).secret
    Membership.objects.filter(user=member, merchant=tenant.merchant).update(role=role)  # not via the service
    world = World(tenant=tenant, member=member, client=Client())
    assert API[action](world, {"key": secret}) is key_can(scope, role, action)


# --- The attacks the review found ------------------------------------------------------------------


def developer(tenant) -> User:
    return member_in(tenant, Role.DEVELOPER)


def test_a_developer_cannot_refund_with_a_write_key_they_made(tenant):
    dev = developer(tenant)
    payment = succeeded_payment(tenant)
    secret = api_key_create(actor=dev, merchant=tenant.merchant, name="mine", scope="write").secret
    # The key still does what a developer may do through the API...
    made = call("POST", "/api/v1/checkout_sessions", key=secret, body={"amount": 700, "currency": "EUR"})
    assert made.status_code == 201
    # ...but not refund, which a developer may not do anywhere.
    refund = call("POST", "/api/v1/refunds", key=secret, body={"payment": payment.public_id, "reason": "x"})
    assert refund.status_code == 403
    assert refund.json()["error"]["message"] == (
        "This API key acts within its creator's current role (developer), which does not allow it to "
        "refund payments; only owners and admins can."
    )
    assert not Refund.objects.exists()
    payment.refresh_from_db()
    assert payment.amount_refunded == 0


def test_a_removed_members_keys_are_revoked_at_once_and_audited(tenant, verified_client):
    from security.models import AuditEvent

    dev = developer(tenant)
    issued = api_key_create(actor=dev, merchant=tenant.merchant, name="ci", scope="write")
    assert call("GET", "/api/v1/payments", key=issued.secret).status_code == 200
    membership = Membership.objects.get(user=dev, merchant=tenant.merchant)
    response = verified_client(tenant.owner).post(f"/team/members/{membership.pk}/remove/")
    assert response.status_code == 302
    refused = call("GET", "/api/v1/payments", key=issued.secret)
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "This API key has been revoked."
    issued.key.refresh_from_db()
    assert issued.key.revoked_at is not None
    event = AuditEvent.objects.get(action="api_key.revoked", target_id=issued.key.public_id)
    assert event.actor_id == tenant.owner.public_id
    assert event.details["reason"] == "member_removed" and event.details["from_role"] == Role.DEVELOPER


def test_a_key_whose_creator_left_the_team_by_any_path_is_refused(tenant):
    dev = developer(tenant)
    secret = api_key_create(actor=dev, merchant=tenant.merchant, name="ci", scope="read").secret
    Membership.objects.filter(user=dev).delete()  # not through the service: nothing revoked the key
    refused = call("GET", "/api/v1/payments", key=secret)
    assert refused.status_code == 401
    assert "no longer on the team" in refused.json()["error"]["message"]
    User.objects.filter(pk=dev.pk).delete()  # the creator's account gone: created_by is now NULL
    assert call("GET", "/api/v1/payments", key=secret).status_code == 401


def test_lowering_a_role_limits_their_keys_at_once_and_is_audited(tenant, verified_client):
    from security.models import AuditEvent

    admin = member_in(tenant, Role.ADMIN)
    payment = succeeded_payment(tenant)
    secret = api_key_create(actor=admin, merchant=tenant.merchant, name="ops", scope="write").secret
    membership = Membership.objects.get(user=admin, merchant=tenant.merchant)
    owner = verified_client(tenant.owner)
    owner.post(f"/team/members/{membership.pk}/role/", {"role": Role.DEVELOPER})
    assert Membership.objects.get(pk=membership.pk).role == Role.DEVELOPER
    refund = call("POST", "/api/v1/refunds", key=secret, body={"payment": payment.public_id, "reason": "x"})
    assert refund.status_code == 403 and not Refund.objects.exists()
    made = call("POST", "/api/v1/checkout_sessions", key=secret, body={"amount": 700, "currency": "EUR"})
    assert made.status_code == 201  # what a developer may do, the key still does
    limited = AuditEvent.objects.get(action="api_key.limited")
    assert limited.details["lost"] == [merchant_roles.PAYMENTS_REFUND]
    assert (limited.details["from_role"], limited.details["to_role"]) == (Role.ADMIN, Role.DEVELOPER)

    # Down to a role that may not hold keys: the key is revoked.
    owner.post(f"/team/members/{membership.pk}/role/", {"role": Role.ANALYST})
    assert call("GET", "/api/v1/payments", key=secret).status_code == 401
    revoked = AuditEvent.objects.get(action="api_key.revoked")
    assert revoked.details["reason"] == "role_changed" and revoked.details["to_role"] == Role.ANALYST


def test_a_key_cannot_be_given_a_scope_its_creators_role_does_not_allow():
    for role in ROLES:
        fits = merchant_roles.scopes_for(role)
        assert (ApiKey.Scope.WRITE in fits) == any(
            role_can(role, a) for a in SCOPE_ACTIONS[ApiKey.Scope.WRITE] - SCOPE_ACTIONS[ApiKey.Scope.READ]
        )
    assert merchant_roles.scopes_for(Role.ANALYST) == [ApiKey.Scope.READ]


def test_an_unknown_action_fails_loudly():
    with pytest.raises(ValueError, match="unknown merchant action"):
        merchant_roles.role_can(Role.OWNER, "payments.refunds")
    from accounts.permissions import merchant_member_required

    with pytest.raises(ValueError):
        merchant_member_required(Role.OWNER)


# --- Analysts and the owner's full-email export ----------------------------------------------------


def test_an_analyst_cannot_download_the_owners_full_email_export_and_sees_why(
    tenant, verified_client, django_capture_on_commit_callbacks
):
    from security.models import AuditEvent

    make_payment(tenant.merchant, email="jane@example.com")
    owner = verified_client(tenant.owner)
    with django_capture_on_commit_callbacks(execute=True):
        owner.post("/payments/export/", {"status": "succeeded"})
    export = PaymentExport.objects.get()
    assert export.full_emails and export.status == PaymentExport.Status.SUCCEEDED

    analyst = verified_client(tenant.teammate)
    listed = analyst.get("/payments/exports/").content.decode()
    assert export.public_id in listed
    detail = analyst.get(f"/payments/exports/{export.public_id}/").content.decode()
    assert 'data-testid="export-download"' not in detail and "only owners and admins may download" in detail
    refused = analyst.get(f"/payments/exports/{export.public_id}/download/")
    assert refused.status_code == 403 and not refused.streaming
    page = refused.content.decode().replace("&#x27;", "'")
    assert (
        "This export holds customers' full email addresses, which only owners and admins may download."
        in page
    )
    assert "jane@example.com" not in page and 'data-testid="export-masked-form"' in page
    assert '<input type="hidden" name="status" value="succeeded">' in page
    export.refresh_from_db()
    assert export.downloads == 0
    assert AuditEvent.objects.filter(action="payments.export_download_refused").count() == 1

    # The page's button: the same export, made by the analyst, with masked emails.
    with django_capture_on_commit_callbacks(execute=True):
        made = analyst.post("/payments/export/", {"status": "succeeded"})
    own = PaymentExport.objects.get(requested_by=tenant.teammate)
    assert made.status_code == 302 and not own.full_emails
    body = b"".join(analyst.get(f"/payments/exports/{own.public_id}/download/").streaming_content)
    assert b"j\xe2\x80\xa2\xe2\x80\xa2\xe2\x80\xa2@example.com" in body and b"jane@example.com" not in body


def test_an_owner_lowered_to_analyst_can_no_longer_download_their_own_full_email_export(
    tenant, verified_client
):
    admin = member_in(tenant, Role.ADMIN)
    make_payment(tenant.merchant, email="jane@example.com")
    export = exports.payment_export_create(
        actor=admin, merchant=tenant.merchant, role=Role.ADMIN, raw_filters={}
    )
    exports.payment_export_run(export_pk=export.pk)
    Membership.objects.filter(user=admin).update(role=Role.ANALYST)
    assert verified_client(admin).get(f"/payments/exports/{export.public_id}/download/").status_code == 403


# --- A fresh second factor for team changes and exports --------------------------------------------


def stale(client: Client) -> Client:
    session = client.session
    session[OTP_VERIFIED_AT] = int(time.time()) - 600
    session.save()
    return client


def test_team_changes_and_exports_need_a_fresh_second_factor(tenant, verified_client):
    owner = stale(verified_client(tenant.owner))
    target = Membership.objects.get(user=tenant.teammate, merchant=tenant.merchant)
    attempts = [
        ("/team/", {"email": "new-admin@example.com", "role": Role.ADMIN}),
        (f"/team/members/{target.pk}/role/", {"role": Role.ADMIN}),
        (f"/team/members/{target.pk}/remove/", {}),
        ("/payments/export/", {}),
    ]
    for path, data in attempts:
        response = owner.post(path, data)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/accounts/2fa/confirm/"), path
    target.refresh_from_db()
    assert target.role == Role.ANALYST
    assert not Invitation.objects.exists() and not PaymentExport.objects.exists()
    # Looking at the team does not ask for a code.
    assert owner.get("/team/").status_code == 200


def test_a_removed_or_lowered_members_pending_invitations_are_withdrawn(tenant, verified_client):
    from accounts.services import invitation_accept_new_user, invitation_create

    admin = member_in(tenant, Role.ADMIN)
    accomplice = invitation_create(
        actor=admin, merchant=tenant.merchant, email="pal@example.com", role="admin"
    )
    membership = Membership.objects.get(user=admin, merchant=tenant.merchant)
    owner = verified_client(tenant.owner)
    owner.post(f"/team/members/{membership.pk}/role/", {"role": Role.ANALYST})
    accomplice.invitation.refresh_from_db()
    assert accomplice.invitation.status == "revoked"
    with pytest.raises(ApplicationError, match="withdrawn"):
        invitation_accept_new_user(token=accomplice.token, password="a-long-enough-passphrase-2026")
    assert not User.objects.filter(email="pal@example.com").exists()

    # An owner's invitation survives their move to admin, unless it invites an owner.
    Membership.objects.filter(pk=membership.pk).update(role=Role.OWNER)
    keeps = invitation_create(actor=admin, merchant=tenant.merchant, email="a@example.com", role="analyst")
    goes = invitation_create(actor=admin, merchant=tenant.merchant, email="o@example.com", role="owner")
    owner.post(f"/team/members/{membership.pk}/role/", {"role": Role.ADMIN})
    keeps.invitation.refresh_from_db()
    goes.invitation.refresh_from_db()
    assert (keeps.invitation.status, goes.invitation.status) == ("pending", "revoked")
    owner.post(f"/team/members/{membership.pk}/remove/")
    keeps.invitation.refresh_from_db()
    assert keeps.invitation.status == "revoked"


def test_the_developers_page_says_which_keys_their_creators_role_limits(tenant, verified_client):
    admin = member_in(tenant, Role.ADMIN)
    api_key_create(actor=admin, merchant=tenant.merchant, name="ops", scope="write")
    Membership.objects.filter(user=admin).update(role=Role.DEVELOPER)
    page = verified_client(tenant.owner).get("/developers/").content.decode()
    assert "Limited to its creator&#x27;s role (developer): cannot refund payments." in page
    Membership.objects.filter(user=admin).delete()
    page = verified_client(tenant.owner).get("/developers/").content.decode()
    assert "Refused: its creator is no longer on the team." in page
