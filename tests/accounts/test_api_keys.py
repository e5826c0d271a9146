"""Merchant API keys: shown once, stored hashed, scoped, expiring, rotatable, revocable, rate-limited."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from accounts.api_auth import MerchantApiAccess
from accounts.api_keys import api_key_create, api_key_revoke, api_key_rotate
from accounts.models import ApiKey, Membership, Merchant, Role
from security.errors import ApplicationError, PermissionDeniedError
from security.models import AuditEvent
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def _key_row(client: Client, name: str) -> str:
    """The row of the Developers page's key table that names ``name``."""
    page = client.get(reverse("developers")).content.decode()
    [row] = [row for row in page.split("<tr>")[1:] if f"<td>{name}</td>" in row]
    return row.split("</tr>")[0]


def bearer(secret: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def me(secret: str):
    return Client().get(reverse("api_me"), **bearer(secret))


def test_key_is_shown_once_after_a_fresh_code_and_stored_only_as_a_hash(verified_client, tenant):
    client = verified_client(tenant.owner)
    session = client.session
    session["otp_verified_at"] = int(time.time()) - 600
    session.save()
    form = {"name": "Shop backend", "scope": "write", "mode": "test", "lifetime_days": "90"}
    stale = client.post(reverse("api_key_create"), form)
    assert stale.status_code == 302 and stale["Location"].startswith(reverse("two_factor_step_up"))
    assert not ApiKey.objects.exists()

    session = client.session
    session["otp_verified_at"] = int(time.time())
    session.save()
    client.post(reverse("api_key_create"), form)
    page = client.get(reverse("developers")).content.decode()
    key = ApiKey.objects.get()
    secret = page.split('data-testid="api-key-secret">')[1].split("<")[0]
    assert secret.startswith("fp_test_") and len(secret) == len("fp_test_") + 44
    assert secret not in key.secret_hash and key.secret_hash != secret
    assert key.expires_at - key.created_at == timedelta(days=90)
    # Shown once only.
    assert secret not in client.get(reverse("developers")).content.decode()
    assert AuditEvent.objects.filter(action="api_key.created", merchant_id=tenant.merchant.public_id).exists()
    # The key is listed by name and prefix, never by its secret; the audit log does not keep it either.
    listed = client.get(reverse("developers")).content.decode()
    assert "Shop backend" in listed and f"<code>{key.display_prefix}…</code>" in listed
    assert secret not in str(list(AuditEvent.objects.values_list("details", flat=True)))


def test_key_authenticates_the_api_and_records_last_use(verified_client, tenant):
    issued = api_key_create(actor=tenant.owner, merchant=tenant.merchant, name="ci", scope="read")
    page = verified_client(tenant.owner)
    assert _key_row(page, "ci").count("never") == 1  # the Last used column
    response = me(issued.secret)
    assert response.status_code == 200
    body = response.json()
    assert (
        body["kind"] == "api_key"
        and body["merchant"] == tenant.merchant.public_id
        and body["scope"] == "read"
    )
    issued.key.refresh_from_db()
    assert issued.key.last_used_at is not None
    used = _key_row(page, "ci")
    assert "never" not in used and " ago</td>" in used  # the developer sees when the key was last used


def test_bad_keys_get_json_errors_with_a_stable_code():
    for header in ({}, bearer("fp_test_nonsense"), {"HTTP_AUTHORIZATION": "Basic abc"}):
        response = Client().get(reverse("api_me"), **header)
        assert response.status_code == 401
        body = response.json()
        assert body["error"]["code"] in ("not_authenticated", "authentication_failed")
        assert body["error"]["message"]


def test_expired_and_revoked_keys_are_refused_with_the_reason(tenant):
    expired = api_key_create(actor=tenant.owner, merchant=tenant.merchant, name="old", scope="read")
    ApiKey.objects.filter(pk=expired.key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = me(expired.secret)
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]

    revoked = api_key_create(actor=tenant.owner, merchant=tenant.merchant, name="gone", scope="read")
    api_key_revoke(actor=tenant.owner, key=revoked.key)
    response = me(revoked.secret)
    assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]
    assert AuditEvent.objects.filter(action="api_key.revoked", target_id=revoked.key.public_id).exists()


def test_rotation_issues_a_new_key_and_keeps_the_old_one_for_an_overlap(tenant):
    old = api_key_create(actor=tenant.owner, merchant=tenant.merchant, name="backend", scope="write")
    new = api_key_rotate(actor=tenant.owner, key=old.key)
    assert me(old.secret).status_code == 200 and me(new.secret).status_code == 200
    old.key.refresh_from_db()
    assert old.key.rotated_to == new.key
    assert AuditEvent.objects.filter(action="api_key.rotated", merchant_id=tenant.merchant.public_id).exists()
    assert timedelta(hours=23) < old.key.expires_at - timezone.now() <= timedelta(hours=24)
    with pytest.raises(ApplicationError, match="already been rotated"):
        api_key_rotate(actor=tenant.owner, key=old.key)
    ApiKey.objects.filter(pk=old.key.pk).update(expires_at=timezone.now())
    assert me(old.secret).status_code == 401 and me(new.secret).status_code == 200


def test_only_owners_admins_and_developers_manage_keys(verified_client, tenant):
    with pytest.raises(PermissionDeniedError):
        api_key_create(actor=tenant.teammate, merchant=tenant.merchant, name="x", scope="read")
    api_key_create(actor=tenant.owner, merchant=tenant.merchant, name="Warehouse sync", scope="read")
    refused = verified_client(tenant.teammate).get(reverse("developers"))
    assert refused.status_code == 403
    assert "Warehouse sync" not in refused.content.decode()
    dev = make_user("dev@alpha.example.com")
    Membership.objects.create(user=dev, merchant=tenant.merchant, role=Role.DEVELOPER)
    opened = verified_client(dev).get(reverse("developers"))
    assert opened.status_code == 200
    assert "Warehouse sync" in opened.content.decode() and "Create key" in opened.content.decode()


def test_live_keys_need_an_approved_merchant(tenant):
    Merchant.objects.filter(pk=tenant.merchant.pk).update(status=Merchant.Status.ONBOARDING)
    tenant.merchant.refresh_from_db()
    with pytest.raises(ApplicationError, match="approved"):
        api_key_create(actor=tenant.owner, merchant=tenant.merchant, name="live", scope="read", mode="live")
    assert api_key_create(actor=tenant.owner, merchant=tenant.merchant, name="t", scope="read", mode="test")


def test_outsider_cannot_revoke_or_rotate_another_merchants_key(verified_client, tenant, outsider):
    issued = api_key_create(actor=tenant.owner, merchant=tenant.merchant, name="theirs", scope="read")
    client = verified_client(outsider.owner)
    assert client.post(reverse("api_key_revoke", args=[issued.key.public_id])).status_code == 404
    assert client.post(reverse("api_key_rotate", args=[issued.key.public_id])).status_code == 404
    issued.key.refresh_from_db()
    assert issued.key.status == "active"
    assert me(issued.secret).status_code == 200  # the merchant's integration keeps working
    assert ApiKey.objects.count() == 1  # no replacement key was issued to anyone


class _WriteProbe(APIView):
    permission_classes = [MerchantApiAccess]
    api_actions = {"POST": "links.manage"}  # a write names its role-table action (undeclared: refused)

    def get(self, request):
        return Response({"ok": True})

    def post(self, request):
        return Response({"ok": True}, status=201)


def test_read_only_key_cannot_write_but_a_write_key_can(tenant):
    read = api_key_create(actor=tenant.owner, merchant=tenant.merchant, name="r", scope="read")
    write = api_key_create(actor=tenant.owner, merchant=tenant.merchant, name="w", scope="write")
    factory = APIRequestFactory()
    view = _WriteProbe.as_view()
    assert view(factory.get("/api/v1/probe", **bearer(read.secret))).status_code == 200
    refused = view(factory.post("/api/v1/probe", {}, **bearer(read.secret)))
    assert refused.status_code == 403 and "read-only" in str(refused.data)
    assert view(factory.post("/api/v1/probe", {}, **bearer(write.secret))).status_code == 201


def test_rate_limit_answers_429_with_retry_after(tenant, settings):
    settings.API_RATE_LIMIT = "3/minute"
    cache.clear()
    issued = api_key_create(actor=tenant.owner, merchant=tenant.merchant, name="busy", scope="read")
    other = api_key_create(actor=tenant.owner, merchant=tenant.merchant, name="calm", scope="read")
    statuses = [me(issued.secret).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = me(issued.secret)
    assert int(limited["Retry-After"]) > 0
    assert limited.json()["error"]["code"] == "throttled"
    assert me(other.secret).status_code == 200  # the budget is per key
