"""Cursor pagination on (created_at, id): complete, stable, and the same cost on every page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from payments import services
from payments.models import CheckoutSession
from security import crypto
from tests.payments.api_helpers import call, key_for, succeeded_payment

pytestmark = pytest.mark.django_db

SESSIONS = "/api/v1/checkout_sessions"


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()


def make_sessions(tenant, n: int, *, same_time: bool = False) -> list[str]:
    """n sessions, oldest first; with ``same_time`` they all share one created_at (ties)."""
    start = timezone.now() - timedelta(hours=1)
    ids = []
    for i in range(n):
        session = services.checkout_session_create(
            actor=tenant.owner, merchant=tenant.merchant, amount=100 + i, currency="EUR"
        )
        CheckoutSession.objects.filter(pk=session.pk).update(
            created_at=start if same_time else start + timedelta(seconds=i)
        )
        ids.append(session.public_id)
    return ids


def walk(key: str, limit: int, **extra) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        query = {"limit": limit, **extra, **({"starting_after": cursor} if cursor else {})}
        body = call("GET", SESSIONS, key=key, **query).json()
        pages.append([s["id"] for s in body["data"]])
        if not body["has_more"]:
            assert body["next_cursor"] is None
            return pages
        cursor = body["next_cursor"]
        assert cursor == pages[-1][-1]


@pytest.mark.parametrize("same_time", [False, True])
def test_paging_forward_returns_every_object_once_newest_first(tenant, same_time):
    ids = make_sessions(tenant, 23, same_time=same_time)
    pages = walk(key_for(tenant), 10)
    assert [len(p) for p in pages] == [10, 10, 3]
    flat = [i for p in pages for i in p]
    assert sorted(flat) == sorted(ids) and len(set(flat)) == 23
    if not same_time:
        assert flat == list(reversed(ids))


def test_ending_before_pages_back(tenant):
    make_sessions(tenant, 15)
    key = key_for(tenant)
    first = call("GET", SESSIONS, key=key, limit=5).json()
    second = call("GET", SESSIONS, key=key, limit=5, starting_after=first["next_cursor"]).json()
    back = call("GET", SESSIONS, key=key, limit=5, ending_before=second["data"][0]["id"]).json()
    assert [s["id"] for s in back["data"]] == [s["id"] for s in first["data"]]
    assert back["has_more"] is False


def test_new_objects_do_not_shift_the_next_page(tenant):
    make_sessions(tenant, 6)
    key = key_for(tenant)
    first = call("GET", SESSIONS, key=key, limit=3).json()
    services.checkout_session_create(actor=tenant.owner, merchant=tenant.merchant, amount=999, currency="EUR")
    second = call("GET", SESSIONS, key=key, limit=3, starting_after=first["next_cursor"]).json()
    assert not set(s["id"] for s in first["data"]) & set(s["id"] for s in second["data"])
    assert len(second["data"]) == 3 and second["has_more"] is False


def test_filters_combine_with_the_cursor(tenant):
    ids = make_sessions(tenant, 8)
    for public_id in ids[::2]:
        services.checkout_session_expire(
            actor=tenant.owner, session=CheckoutSession.objects.get(public_id=public_id)
        )
    pages = walk(key_for(tenant), 2, status="expired")
    assert [i for p in pages for i in p] == list(reversed(ids[::2]))


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"starting_after": "cs_nope"}, "starting_after"),
        ({"ending_before": "cs_nope"}, "ending_before"),
        ({"starting_after": "a", "ending_before": "b"}, "starting_after"),
    ],
)
def test_bad_paging_parameters_are_field_errors(tenant, query, field):
    make_sessions(tenant, 1)
    response = call("GET", SESSIONS, key=key_for(tenant), **query)
    assert response.status_code == 400
    assert (
        response.json()["error"]["code"] == "invalid_request" and field in response.json()["error"]["fields"]
    )


def test_another_merchants_id_is_not_a_cursor(tenant, outsider):
    theirs = make_sessions(outsider, 1)[0]
    make_sessions(tenant, 2)
    response = call("GET", SESSIONS, key=key_for(tenant), starting_after=theirs)
    assert response.status_code == 400
    # The client is told the id is not in its list, just as for an id that does not exist: nothing
    # of the other merchant's session (not even that it exists) comes back.
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["fields"] == {"starting_after": ["No object with this id in this list."]}
    assert theirs not in response.content.decode()
    unknown = call("GET", SESSIONS, key=key_for(tenant), starting_after="cs_doesnotexist")
    assert unknown.json() == response.json()


def _queries(key: str, path: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert call("GET", path, key=key, limit=100).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("path", ["/api/v1/payments", "/api/v1/refunds", SESSIONS])
def test_list_queries_do_not_grow_with_the_page(tenant, path, django_capture_on_commit_callbacks):
    key = key_for(tenant, scope="read")

    def add(n: int, start: int) -> None:
        emails = [f"buyer{i}@example.com" for i in range(start, start + n)]
        # Each customer's data key becomes shareable once its transaction commits.
        with django_capture_on_commit_callbacks(execute=True):
            for email in emails:
                services.customer_for_email(merchant=tenant.merchant, email=email)
        for email in emails:
            payment = succeeded_payment(tenant, amount=1000, email=email)
            services.refund_create(actor=tenant.owner, payment=payment, amount=100, reason="r")

    add(2, 0)
    call("GET", path, key=key)  # the key's last-used stamp is written at most once a minute
    crypto.clear_key_cache()
    small = _queries(key, path)
    add(12, 2)
    crypto.clear_key_cache()
    large = _queries(key, path)
    assert large == small, f"{small} queries for 2 objects, {large} for 14"
