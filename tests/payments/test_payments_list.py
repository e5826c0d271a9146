"""The payments list: filters, search by id or email (blind index), keyset pages, tenancy, query counts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from payments.models import Payment
from security import crypto
from tests.payments.dashboard_helpers import BASE_TIME, link, make_many, make_payment, row_ids

pytestmark = pytest.mark.django_db
URL = "/payments/"


def test_the_list_shows_the_merchants_payments_newest_first_with_masked_emails(verified_client, tenant):
    old = make_payment(
        tenant.merchant, email="jane.doe@example.com", created_at=BASE_TIME - timedelta(days=1)
    )
    new = make_payment(
        tenant.merchant,
        email="bob@example.org",
        amount=123456,
        status=Payment.Status.FAILED,
        decline_code="insufficient_funds",
        fraud_outcome="review",
        card_brand="mastercard",
        card_last4="4444",
    )
    body = verified_client(tenant.owner).get(URL).content.decode()
    assert row_ids(body) == [new.public_id, old.public_id]
    assert "1,234.56 EUR" in body and "25.00 EUR" in body
    assert "j•••@example.com" in body and "b•••@example.org" in body
    assert "jane.doe@example.com" not in body and "bob@example.org" not in body
    assert "Mastercard •••• 4444" in body and "insufficient_funds" in body
    assert f'href="/payments/{new.public_id}/"' in body
    assert 'class="status status-failed"' in body and 'class="status status-review"' in body


def test_another_merchants_payments_never_appear(verified_client, tenant, outsider):
    mine = make_payment(tenant.merchant, email="shared@example.com")
    theirs = make_payment(outsider.merchant, email="shared@example.com")
    client = verified_client(tenant.owner)
    for query in ("", "?q=shared@example.com", f"?q={theirs.public_id}", "?status=succeeded"):
        body = client.get(URL + query).content.decode()
        assert theirs.public_id not in row_ids(body)
        assert f'href="/payments/{theirs.public_id}/"' not in body
    assert row_ids(client.get(URL + "?q=shared@example.com").content.decode()) == [mine.public_id]
    # A cursor from another merchant does not leak anything either: it is ignored.
    body = client.get(f"{URL}?after={theirs.public_id}").content.decode()
    assert row_ids(body) == [mine.public_id]


def test_filters_narrow_the_list(verified_client, tenant):
    m = tenant.merchant
    eur_15 = make_payment(m, amount=1500, currency="EUR")
    eur_30 = make_payment(m, amount=3000, currency="EUR", created_at=BASE_TIME - timedelta(days=3))
    jpy_15 = make_payment(m, amount=15, currency="JPY", gateway="stripe")
    jpy_1500 = make_payment(m, amount=1500, currency="JPY")
    kwd_12 = make_payment(m, amount=12500, currency="KWD")  # 12.500 KWD
    failed = make_payment(m, amount=1800, status=Payment.Status.FAILED, fraud_outcome="block")
    client = verified_client(tenant.owner)

    def ids(query: str) -> set[str]:
        response = client.get(URL + query)
        assert response.status_code == 200, response.content.decode()
        return set(row_ids(response.content.decode()))

    assert ids("?status=failed") == {failed.public_id}
    assert ids("?currency=jpy") == {jpy_15.public_id, jpy_1500.public_id}
    assert ids("?gateway=stripe") == {jpy_15.public_id}
    assert ids("?risk=block") == {failed.public_id}
    assert failed.public_id not in ids("?risk=none")
    # Amounts are typed in major units and compared per currency's exponent.
    assert ids("?amount_min=10&amount_max=20") == {
        eur_15.public_id,
        jpy_15.public_id,
        kwd_12.public_id,
        failed.public_id,
    }
    assert ids("?amount_min=10&amount_max=20&currency=EUR") == {eur_15.public_id, failed.public_id}
    assert ids("?amount_min=1000&currency=JPY") == {jpy_1500.public_id}
    # Dates are inclusive UTC days.
    day = (BASE_TIME - timedelta(days=3)).date().isoformat()
    assert ids(f"?created_from={day}&created_to={day}") == {eur_30.public_id}
    assert eur_30.public_id not in ids(f"?created_from={BASE_TIME.date().isoformat()}")
    assert ids("?status=succeeded&currency=EUR&amount_min=20") == {eur_30.public_id}


def test_search_finds_a_payment_by_id_or_by_exact_customer_email(verified_client, tenant):
    m = tenant.merchant
    jane = make_payment(m, email="Jane.Doe@Example.com")
    jane_again = make_payment(m, email="jane.doe@example.com", created_at=BASE_TIME - timedelta(hours=1))
    other = make_payment(m, email="janet@example.com")
    client = verified_client(tenant.owner)
    body = client.get(URL + "?q=%20JANE.DOE@example.com%20").content.decode()
    assert row_ids(body) == [jane.public_id, jane_again.public_id]
    assert other.public_id not in body
    assert row_ids(client.get(f"{URL}?q={other.public_id}").content.decode()) == [other.public_id]
    assert "No payments match" in client.get(URL + "?q=nobody@example.com").content.decode()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?amount_min=ten", "is not an amount"),
        ("?amount_min=1.5&currency=JPY", "JPY has no minor unit"),
        ("?amount_min=20&amount_max=10", "must not be below"),
        ("?created_from=2026-11-20&created_to=2026-11-01", "on or after the start date"),
        ("?created_from=yesterday", "Enter a valid date"),
        ("?q=jane", "payment id (pay_…) or a customer&#x27;s full email"),
        ("?currency=XYZ", "not supported"),
        ("?status=paid", "Select a valid choice"),
    ],
)
def test_invalid_filters_get_a_clear_message_not_an_error_page(verified_client, tenant, query, message):
    make_payment(tenant.merchant)
    response = verified_client(tenant.owner).get(URL + query)
    assert response.status_code == 400
    body = response.content.decode()
    assert message in body
    assert row_ids(body) == []


def test_pages_walk_forward_and_back_without_duplicates_or_gaps(verified_client, tenant):
    m = tenant.merchant
    made = make_many(m, 100)
    # Ties on created_at are broken by id.
    made += [make_payment(m, created_at=BASE_TIME - timedelta(minutes=30)) for _ in range(15)]
    expected = [p.public_id for p in Payment.objects.filter(merchant=m).order_by("-created_at", "-id")]
    client = verified_client(tenant.owner)
    seen: list[str] = []
    pages: list[list[str]] = []
    url: str | None = URL
    while url:
        body = client.get(url).content.decode()
        page = row_ids(body)
        pages.append(page)
        seen += page
        url = link(body, "next")
    assert seen == expected
    assert [len(p) for p in pages] == [50, 50, 15]
    # And back again with Previous from the last page.
    back: list[list[str]] = []
    url = link(client.get(URL + f"?after={pages[1][-1]}").content.decode(), "prev")
    while url:
        body = client.get(url).content.decode()
        back.insert(0, row_ids(body))
        url = link(body, "prev")
    assert back == pages[:2]


def test_pages_keep_the_filters(verified_client, tenant):
    make_many(tenant.merchant, 60, status=Payment.Status.FAILED)
    make_many(tenant.merchant, 10)
    client = verified_client(tenant.owner)
    body = client.get(URL + "?status=failed").content.decode()
    second = client.get(link(body, "next")).content.decode()
    assert len(row_ids(body)) == 50 and len(row_ids(second)) == 10
    assert set(row_ids(second)) <= set(
        Payment.objects.filter(status="failed").values_list("public_id", flat=True)
    )


def _page_queries(client, url: str) -> int:
    crypto.clear_key_cache()
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("query", ["", "?status=succeeded&amount_min=1", "?q=same@example.com"])
def test_queries_per_page_do_not_grow_with_the_number_of_rows(
    verified_client, tenant, outsider, django_assert_num_queries, django_capture_on_commit_callbacks, query
):
    client = verified_client(tenant.owner)

    def add(n: int, start) -> None:  # noqa: ANN001
        # Each customer's data key becomes shareable once its transaction commits.
        with django_capture_on_commit_callbacks(execute=True):
            make_many(tenant.merchant, n, email="same@example.com", start=start)
            for i in range(n):
                make_payment(tenant.merchant, email=f"buyer{start:%d}{i}@example.com", created_at=start)

    add(5, BASE_TIME)
    small = _page_queries(client, URL + query)
    add(55, BASE_TIME - timedelta(days=1))
    crypto.clear_key_cache()
    with django_assert_num_queries(small):
        response = client.get(URL + query)
    assert len(row_ids(response.content.decode())) == 50


def test_the_next_page_costs_the_same_as_the_first(
    verified_client, tenant, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        make_many(tenant.merchant, 120, email="same@example.com")
    client = verified_client(tenant.owner)
    first = client.get(URL).content.decode()
    crypto.clear_key_cache()
    with CaptureQueriesContext(connection) as ctx_first:
        client.get(URL)
    crypto.clear_key_cache()
    with CaptureQueriesContext(connection) as ctx_next:
        client.get(link(first, "next"))
    # One more query: finding the cursor's row.
    assert len(ctx_next.captured_queries) == len(ctx_first.captured_queries) + 1


def test_every_team_role_sees_the_list_and_people_without_a_team_do_not(verified_client, tenant, db):
    from tests.conftest import make_user

    payment = make_payment(tenant.merchant)
    seen = verified_client(tenant.teammate).get(URL)
    assert seen.status_code == 200
    assert row_ids(seen.content.decode()) == [payment.public_id]
    stranger = make_user("stranger@example.com")
    refused = verified_client(stranger).get(URL)
    assert refused.status_code == 403
    assert payment.public_id not in refused.content.decode()
