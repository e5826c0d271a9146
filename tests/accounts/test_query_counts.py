"""List pages make a constant number of queries whatever their length."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Membership, Role
from accounts.services import invitation_create
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_team_page_queries_do_not_grow_with_the_team(verified_client, tenant):
    client = verified_client(tenant.owner)
    client.get(reverse("team"))
    small = queries_for(client, reverse("team"))
    for i in range(25):
        user = make_user(f"member{i}@alpha.example.com", with_totp=False)
        Membership.objects.create(user=user, merchant=tenant.merchant, role=Role.ANALYST)
        invitation_create(
            actor=tenant.owner, merchant=tenant.merchant, email=f"invitee{i}@example.com", role="analyst"
        )
    large = queries_for(client, reverse("team"))
    assert large == small, f"{small} queries with 2 members, {large} with 27"
