"""Idempotency-Key on the merchant API's POSTs: replay, conflict, in progress, scope, expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as project_settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from payments import services, tasks
from payments.idempotency import fingerprint, idempotency_begin, idempotency_reserve_id
from payments.models import CheckoutSession, IdempotencyRecord, Refund
from tests.payments.api_helpers import call, key_for, succeeded_payment

pytestmark = pytest.mark.django_db

SESSIONS = "/api/v1/checkout_sessions"
REFUNDS = "/api/v1/refunds"
BODY = {"amount": 2500, "currency": "EUR", "description": "Order 9"}


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()


def test_a_retry_with_the_same_key_and_body_returns_the_first_response(tenant):
    key = key_for(tenant)
    first = call("POST", SESSIONS, key=key, body=BODY, idem="order-9")
    second = call("POST", SESSIONS, key=key, body=BODY, idem="order-9")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert first["Idempotency-Key"] == "order-9"
    assert CheckoutSession.objects.count() == 1


def test_key_order_and_spacing_of_the_body_do_not_matter(tenant):
    from django.test import Client

    key = key_for(tenant)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}", "HTTP_IDEMPOTENCY_KEY": "same"}
    a = Client().post(
        SESSIONS, '{"amount": 2500, "currency": "EUR"}', content_type="application/json", **auth
    )
    b = Client().post(SESSIONS, '{"currency":"EUR","amount":2500}', content_type="application/json", **auth)
    assert a.json() == b.json() and CheckoutSession.objects.count() == 1


def test_the_same_key_with_a_different_body_is_a_409_and_does_nothing(tenant):
    key = key_for(tenant)
    call("POST", SESSIONS, key=key, body=BODY, idem="order-9")
    changed = call("POST", SESSIONS, key=key, body={**BODY, "amount": 2600}, idem="order-9")
    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "idempotency_key_reused"
    assert "different request" in changed.json()["error"]["message"]
    assert CheckoutSession.objects.count() == 1


def test_the_same_key_on_another_endpoint_is_a_409(tenant):
    key = key_for(tenant)
    session = call("POST", SESSIONS, key=key, body=BODY, idem="k1").json()
    other = call("POST", f"{SESSIONS}/{session['id']}/expire", key=key, idem="k1")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert CheckoutSession.objects.get().status == "open"


def test_a_request_still_in_progress_with_the_same_key_is_a_409(tenant):
    key = key_for(tenant)
    from accounts.models import ApiKey

    api_key = ApiKey.objects.get()
    # Another worker has claimed the key and is still creating the session.
    idempotency_begin(
        merchant=tenant.merchant,
        principal=f"key:{api_key.public_id}",
        key="order-10",
        method="POST",
        path=SESSIONS,
        request_fingerprint=fingerprint(method="POST", path=SESSIONS, body=BODY),
    )
    response = call("POST", SESSIONS, key=key, body=BODY, idem="order-10")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_in_use"
    assert not CheckoutSession.objects.exists()


def test_a_refund_retried_after_a_crash_reuses_its_reserved_id_and_refunds_once(tenant):
    payment = succeeded_payment(tenant, amount=1000)
    key = key_for(tenant)
    from accounts.models import ApiKey

    body = {"payment": payment.public_id, "amount": 300, "reason": "Broken"}
    begun = idempotency_begin(
        merchant=tenant.merchant,
        principal=f"key:{ApiKey.objects.get().public_id}",
        key="refund-1",
        method="POST",
        path=REFUNDS,
        request_fingerprint=fingerprint(method="POST", path=REFUNDS, body=body),
    )
    reserved = idempotency_reserve_id(record=begun.record, make_id=lambda: "re_" + "R" * 24)
    # The first worker refunded, then died before storing its response.
    services.refund_create(
        actor=tenant.owner, payment=payment, amount=300, reason="Broken", refund_public_id=reserved
    )
    IdempotencyRecord.objects.update(locked_at=timezone.now() - timedelta(minutes=6))
    retried = call("POST", REFUNDS, key=key, body=body, idem="refund-1")
    assert retried.status_code == 201 and retried.json()["id"] == reserved
    assert Refund.objects.count() == 1
    payment.refresh_from_db()
    assert payment.amount_refunded == 300


def test_keys_belong_to_one_api_key_and_one_merchant(tenant, outsider):
    ours_a, ours_b, theirs = key_for(tenant, name="a"), key_for(tenant, name="b"), key_for(outsider)
    for key in (ours_a, ours_b, theirs):
        assert call("POST", SESSIONS, key=key, body=BODY, idem="shared").status_code == 201
    assert CheckoutSession.objects.filter(merchant=tenant.merchant).count() == 2
    assert CheckoutSession.objects.filter(merchant=outsider.merchant).count() == 1


def test_a_team_member_and_a_key_have_separate_keys(verified_client, tenant):
    client = verified_client(tenant.owner)
    a = call("POST", SESSIONS, client=client, body=BODY, idem="x")
    b = call("POST", SESSIONS, client=client, body=BODY, idem="x")
    c = call("POST", SESSIONS, key=key_for(tenant), body=BODY, idem="x")
    assert a.json() == b.json() and c.json()["id"] != a.json()["id"]


def test_the_database_refuses_a_duplicate_key(tenant):
    values = {"merchant": tenant.merchant, "principal": "user:u", "key": "k", "method": "POST", "path": "/"}
    IdempotencyRecord.objects.create(**values, fingerprint="a")
    with pytest.raises(IntegrityError), transaction.atomic():
        IdempotencyRecord.objects.create(**values, fingerprint="b")


def test_an_invalid_body_is_not_remembered_so_the_key_can_be_used_with_a_fixed_body(tenant):
    key = key_for(tenant)
    bad = call("POST", SESSIONS, key=key, body={"amount": "a lot", "currency": "EUR"}, idem="fix-me")
    assert bad.status_code == 400 and not IdempotencyRecord.objects.exists()
    good = call("POST", SESSIONS, key=key, body=BODY, idem="fix-me")
    assert good.status_code == 201


def test_a_business_error_is_the_stored_result(tenant):
    payment = succeeded_payment(tenant, amount=1000)
    key = key_for(tenant)
    body = {"payment": payment.public_id, "amount": 5000, "reason": "x"}
    first = call("POST", REFUNDS, key=key, body=body, idem="big")
    again = call("POST", REFUNDS, key=key, body=body, idem="big")
    assert first.status_code == again.status_code == 400
    assert first.json() == again.json() and again.json()["error"]["code"] == "amount_too_large"
    assert again["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("bad", ["", " ", "x" * 256, "has space", "tab\tkey", "ünïcode"])
def test_malformed_keys_are_refused(tenant, bad):
    from django.test import Client

    response = Client().post(
        SESSIONS,
        '{"amount": 100, "currency": "EUR"}',
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key_for(tenant)}",
        HTTP_IDEMPOTENCY_KEY=bad,
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_idempotency_key"
    assert not CheckoutSession.objects.exists()


def test_keys_are_forgotten_after_24_hours(tenant):
    key = key_for(tenant)
    first = call("POST", SESSIONS, key=key, body=BODY, idem="daily").json()
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=24, seconds=1))
    # Not purged yet, but expired: the key starts afresh.
    fresh = call("POST", SESSIONS, key=key, body=BODY, idem="daily").json()
    assert fresh["id"] != first["id"]
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))
    call("POST", SESSIONS, key=key, body=BODY, idem="today")
    assert tasks.purge_idempotency_keys() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["today"]


def test_the_purge_runs_hourly_from_beat():
    entries = [
        e
        for e in project_settings.CELERY_BEAT_SCHEDULE.values()
        if e["task"] == "payments.purge_idempotency_keys"
    ]
    assert entries and entries[0]["schedule"] <= 3600


def test_gets_ignore_the_header(tenant):
    key = key_for(tenant)
    assert call("GET", SESSIONS, key=key, idem="whatever").status_code == 200
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_key_create_one_session():
    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises every writer on its database lock; the race is tested on PostgreSQL")
    import threading

    from tests.conftest import make_tenant

    tenant = make_tenant("racer")
    key = key_for(tenant)
    barrier = threading.Barrier(6)
    statuses: list[tuple[int, str]] = []
    errors: list[str] = []

    def attempt() -> None:
        try:
            barrier.wait(10)
            response = call("POST", SESSIONS, key=key, body=BODY, idem="racing")
            code = response.json().get("error", {}).get("code", "") if response.status_code != 201 else ""
            statuses.append((response.status_code, code or response.get("Idempotent-Replayed", "first")))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert CheckoutSession.objects.filter(merchant=tenant.merchant).count() == 1
    assert statuses.count((201, "first")) == 1
    assert all(s in ((201, "first"), (201, "true"), (409, "idempotency_key_in_use")) for s in statuses), (
        statuses
    )
