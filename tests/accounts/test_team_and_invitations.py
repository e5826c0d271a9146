"""Teams: invitations by email, roles, removal, and the last-owner rule."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts.models import Invitation, Membership, Role, User
from accounts.services import invitation_create
from security.models import AuditEvent
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

GOOD_PASSWORD = "a-long-and-unusual-passphrase-77"


def invite_link_from_outbox() -> str:
    body = mail.outbox[-1].body
    return re.search(r"https?://[^\s]+/invite/[^\s]+/", body).group(0)


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def test_owner_invites_by_email_and_invitee_joins_with_a_password(
    verified_client, tenant, client, django_capture_on_commit_callbacks
):
    owner_client = verified_client(tenant.owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(
            reverse("team"), {"email": "New.Person@Example.com", "role": "developer"}
        )
    assert response.status_code == 302
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["new.person@example.com"]
    link = path_of(invite_link_from_outbox())
    page = client.get(link)
    assert page.status_code == 200 and b"new.person@example.com" in page.content

    done = client.post(
        link, {"full_name": "New Person", "password1": GOOD_PASSWORD, "password2": GOOD_PASSWORD}
    )
    assert done.status_code == 302 and done["Location"] == reverse("two_factor_enrol")
    user = User.objects.get(email="new.person@example.com")
    assert Membership.objects.get(user=user, merchant=tenant.merchant).role == Role.DEVELOPER
    assert AuditEvent.objects.filter(
        action="team.invitation_accepted", merchant_id=tenant.merchant.public_id
    ).exists()
    # The link is single-use.
    client.post(reverse("account_logout"))
    reuse = client.get(link)
    assert reuse.status_code == 410 and b"already been used" in reuse.content


def test_invitation_expires_after_72_hours(tenant, client):
    issued = invitation_create(
        actor=tenant.owner, merchant=tenant.merchant, email="late@example.com", role="analyst"
    )
    assert issued.invitation.expires_at - issued.invitation.created_at == timedelta(hours=72)
    Invitation.objects.filter(pk=issued.invitation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = client.post(
        issued.path, {"full_name": "Late", "password1": GOOD_PASSWORD, "password2": GOOD_PASSWORD}
    )
    assert response.status_code == 410 and b"expired" in response.content
    assert not User.objects.filter(email="late@example.com").exists()


def test_weak_password_is_refused_and_nothing_is_created(tenant, client):
    issued = invitation_create(
        actor=tenant.owner, merchant=tenant.merchant, email="weak@example.com", role="analyst"
    )
    for weak in ("short", "password1234", "123456789012"):
        response = client.post(issued.path, {"full_name": "Weak", "password1": weak, "password2": weak})
        assert response.status_code == 400
    assert not User.objects.filter(email="weak@example.com").exists()
    issued.invitation.refresh_from_db()
    assert issued.invitation.accepted_at is None


def test_unknown_invitation_token_gets_a_clear_page(client):
    response = client.get(reverse("invitation_accept", kwargs={"token": "nope"}))
    assert response.status_code == 404 and b"not valid" in response.content


def test_analyst_cannot_invite(verified_client, tenant):
    response = verified_client(tenant.teammate).post(
        reverse("team"), {"email": "x@example.com", "role": "analyst"}
    )
    assert response.status_code == 302
    assert not Invitation.objects.exists()


def test_admin_can_invite_but_not_an_owner(verified_client, tenant):
    admin = make_user("admin@alpha.example.com")
    Membership.objects.create(user=admin, merchant=tenant.merchant, role=Role.ADMIN)
    client = verified_client(admin)
    refused = client.post(reverse("team"), {"email": "boss@example.com", "role": "owner"})
    assert refused.status_code == 400 and b"Only an owner can invite another owner" in refused.content
    ok = client.post(reverse("team"), {"email": "dev@example.com", "role": "developer"})
    assert ok.status_code == 302 and Invitation.objects.filter(email="dev@example.com").exists()


def test_new_invitation_replaces_the_pending_one(tenant, client):
    first = invitation_create(
        actor=tenant.owner, merchant=tenant.merchant, email="twice@example.com", role="analyst"
    )
    invitation_create(
        actor=tenant.owner, merchant=tenant.merchant, email="twice@example.com", role="developer"
    )
    response = client.get(first.path)
    assert response.status_code == 410 and b"withdrawn" in response.content


def test_existing_user_joins_a_second_merchant_with_their_account(verified_client, tenant, outsider):
    issued = invitation_create(
        actor=outsider.owner, merchant=outsider.merchant, email=tenant.teammate.email, role="analyst"
    )
    client = verified_client(tenant.teammate)
    response = client.post(issued.path)
    assert response.status_code == 302
    assert Membership.objects.filter(user=tenant.teammate, merchant=outsider.merchant).exists()


def test_owner_changes_a_role(verified_client, tenant):
    membership = Membership.objects.get(user=tenant.teammate)
    response = verified_client(tenant.owner).post(
        reverse("team_member_role", args=[membership.pk]), {"role": "admin"}
    )
    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN
    assert AuditEvent.objects.filter(action="team.role_changed").exists()


def test_the_last_owner_can_never_be_demoted_or_removed(verified_client, tenant):
    client = verified_client(tenant.owner)
    own = Membership.objects.get(user=tenant.owner)
    client.post(reverse("team_member_role", args=[own.pk]), {"role": "analyst"}, follow=True)
    own.refresh_from_db()
    assert own.role == Role.OWNER
    response = client.post(reverse("team_member_remove", args=[own.pk]), follow=True)
    assert b"only owner" in response.content
    assert Membership.objects.filter(pk=own.pk).exists()


def test_owner_removes_a_member_after_confirmation(verified_client, tenant):
    client = verified_client(tenant.owner)
    target = Membership.objects.get(user=tenant.teammate)
    confirm = client.get(reverse("team_member_remove", args=[target.pk]))
    assert confirm.status_code == 200 and b"Remove from team" in confirm.content
    assert Membership.objects.filter(pk=target.pk).exists()
    client.post(reverse("team_member_remove", args=[target.pk]))
    assert not Membership.objects.filter(pk=target.pk).exists()


def test_non_owner_cannot_change_roles(verified_client, tenant):
    own = Membership.objects.get(user=tenant.owner)
    response = verified_client(tenant.teammate).post(
        reverse("team_member_role", args=[own.pk]), {"role": "analyst"}
    )
    assert response.status_code == 403


def test_outsider_cannot_see_or_touch_another_merchants_team(verified_client, tenant, outsider):
    client = verified_client(outsider.owner)
    page = client.get(reverse("team"))
    assert tenant.owner.email.encode() not in page.content
    theirs = Membership.objects.get(user=tenant.teammate)
    assert client.post(reverse("team_member_role", args=[theirs.pk]), {"role": "owner"}).status_code == 404
    assert client.post(reverse("team_member_remove", args=[theirs.pk])).status_code == 404
    theirs.refresh_from_db()
    assert theirs.role == Role.ANALYST
