"""Developers → Webhooks: add (secret shown once), refuse unsafe URLs, disable, delete, delivery log."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Membership, Role
from payments.merchant_webhooks import (
    MAX_ENDPOINTS_PER_MERCHANT,
    webhook_delivery_attempt,
    webhook_endpoint_create,
)
from payments.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from security.errors import ApplicationError, PermissionDeniedError
from security.models import AuditEvent
from tests.conftest import make_user
from tests.payments.api_helpers import succeeded_payment
from tests.payments.webhook_helpers import receiver_url, register

pytestmark = pytest.mark.django_db

PAGE = "/developers/webhooks/"


def endpoint_url(endpoint: WebhookEndpoint, suffix: str = "") -> str:
    return f"{PAGE}{endpoint.public_id}/{suffix}"


def test_the_developers_page_links_to_webhooks(verified_client, tenant):
    page = verified_client(tenant.owner).get("/developers/").content.decode()
    assert f'href="{PAGE}"' in page


def test_adding_an_endpoint_shows_its_secret_once_and_stores_it_encrypted(verified_client, tenant, receiver):
    client = verified_client(tenant.owner)
    url = receiver_url(receiver)
    response = client.post(
        f"{PAGE}new/",
        {"url": url, "description": "Shop", "event_types": ["payment.succeeded", "refund.created"]},
    )
    assert response.status_code == 302 and response["Location"] == PAGE
    page = client.get(PAGE).content.decode()
    secret = page.split('data-testid="webhook-secret">')[1].split("<")[0]
    assert secret.startswith("whsec_") and len(secret) == len("whsec_") + 32
    assert secret not in client.get(PAGE).content.decode()  # shown once
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.url == url and endpoint.event_types == ["payment.succeeded", "refund.created"]
    assert endpoint.secret == secret and endpoint.merchant == tenant.merchant and endpoint.enabled
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM payments_webhookendpoint")
        stored = cursor.fetchone()[0]
    assert secret not in stored and "whsec_" not in stored
    assert AuditEvent.objects.filter(action="webhook_endpoint.created").exists()


def test_adding_an_endpoint_needs_a_fresh_second_factor(verified_client, tenant, receiver):
    client = verified_client(tenant.owner)
    session = client.session
    session["otp_verified_at"] = int(time.time()) - 600
    session.save()
    response = client.post(f"{PAGE}new/", {"url": receiver_url(receiver)})
    assert response.status_code == 302 and "/2fa/confirm/" in response["Location"]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1/hooks", "127.0.0.1 resolves to 127.0.0.1, a loopback address"),
        ("https://localhost/hooks", "localhost is not allowed"),
        (
            "https://internal.example.com/hooks",
            "internal.example.com resolves to 10.1.2.3, a private address",
        ),
        ("https://metadata.example.com/", "resolves to 169.254.169.254, a link-local address"),
        ("https://[::1]/hooks", "a loopback address"),
        ("http://public.example.com/hooks", "only https URLs are allowed"),
        ("https://public.example.com:8443/hooks", "port 8443 is not allowed"),
        ("https://user:pw@public.example.com/", "credentials in the URL are not allowed"),
        ("ftp://public.example.com/", "only https URLs are allowed"),
        ("https://nowhere.example.com/", "does not resolve"),
    ],
)
def test_unsafe_urls_are_refused_with_the_reason_and_nothing_is_saved(
    verified_client, tenant, dns, url, reason
):
    response = verified_client(tenant.owner).post(f"{PAGE}new/", {"url": url})
    assert response.status_code == 400
    page = response.content.decode()
    assert "This URL cannot receive webhooks" in page and reason in page.replace("&#x27;", "'")
    assert not WebhookEndpoint.objects.exists()


def test_a_public_https_url_is_accepted(tenant, dns):
    issued = webhook_endpoint_create(
        actor=tenant.owner, merchant=tenant.merchant, url="https://public.example.com/h"
    )
    assert issued.endpoint.url == "https://public.example.com/h"


def test_bad_input_changes_nothing(tenant, dns):
    with pytest.raises(ApplicationError, match="Unknown event types: payment.exploded"):
        webhook_endpoint_create(
            actor=tenant.owner,
            merchant=tenant.merchant,
            url="https://public.example.com/h",
            event_types=["payment.exploded"],
        )
    with pytest.raises(ApplicationError, match="Enter the URL"):
        webhook_endpoint_create(actor=tenant.owner, merchant=tenant.merchant, url="  ")
    for _ in range(MAX_ENDPOINTS_PER_MERCHANT):
        webhook_endpoint_create(
            actor=tenant.owner, merchant=tenant.merchant, url="https://public.example.com/h"
        )
    with pytest.raises(ApplicationError, match="at most 16"):
        webhook_endpoint_create(
            actor=tenant.owner, merchant=tenant.merchant, url="https://public.example.com/h"
        )
    assert WebhookEndpoint.objects.count() == MAX_ENDPOINTS_PER_MERCHANT


def test_only_owners_admins_and_developers_manage_endpoints(verified_client, tenant, dns):
    assert verified_client(tenant.teammate).get(PAGE).status_code == 403
    with pytest.raises(PermissionDeniedError):
        webhook_endpoint_create(
            actor=tenant.teammate, merchant=tenant.merchant, url="https://public.example.com/"
        )
    developer = make_user("dev@alpha.example.com")
    Membership.objects.create(user=developer, merchant=tenant.merchant, role=Role.DEVELOPER)
    assert verified_client(developer).get(PAGE).status_code == 200


def test_another_merchants_endpoint_and_deliveries_are_not_found(verified_client, tenant, outsider, receiver):
    issued = register(tenant, receiver)
    succeeded_payment(tenant)
    delivery = WebhookDelivery.objects.get()
    client = verified_client(outsider.owner)
    base = endpoint_url(issued.endpoint)
    for path in (base, f"{base}delete/", f"{base}deliveries/{delivery.public_id}/"):
        assert client.get(path).status_code == 404, path
    for path, data in (
        (f"{base}status/", {"enabled": "0"}),
        (f"{base}delete/", {}),
        (f"{base}deliveries/{delivery.public_id}/resend/", {}),
    ):
        assert client.post(path, data).status_code == 404, path
    assert issued.endpoint.url not in client.get(PAGE).content.decode()
    # Nor can one of our own endpoints reach another endpoint's delivery.
    ours = register(tenant, receiver)
    own_client = verified_client(tenant.owner)
    assert own_client.get(f"{endpoint_url(ours.endpoint)}deliveries/{delivery.public_id}/").status_code == 404
    issued.endpoint.refresh_from_db()
    delivery.refresh_from_db()
    assert issued.endpoint.enabled and delivery.status == "pending" and delivery.attempts == 0


def test_disable_and_enable_again(verified_client, tenant, receiver):
    issued = register(tenant, receiver)
    client = verified_client(tenant.owner)
    status = endpoint_url(issued.endpoint, "status/")
    assert client.post(status, {"enabled": "0"}).status_code == 302
    issued.endpoint.refresh_from_db()
    assert not issued.endpoint.enabled and issued.endpoint.disabled_at
    page = client.get(endpoint_url(issued.endpoint)).content.decode()
    assert "Disabled" in page and 'name="enabled" value="1"' in page
    client.post(status, {"enabled": "maybe"})
    issued.endpoint.refresh_from_db()
    assert not issued.endpoint.enabled
    client.post(status, {"enabled": "1"})
    issued.endpoint.refresh_from_db()
    assert issued.endpoint.enabled and issued.endpoint.disabled_at is None
    assert AuditEvent.objects.filter(action="webhook_endpoint.disabled").exists()


def test_delete_asks_for_confirmation_then_removes_the_endpoint_and_its_log(
    verified_client, tenant, receiver
):
    issued = register(tenant, receiver)
    succeeded_payment(tenant)
    webhook_delivery_attempt(delivery_pk=WebhookDelivery.objects.get().pk)
    client = verified_client(tenant.owner)
    confirm = client.get(endpoint_url(issued.endpoint, "delete/"))
    assert confirm.status_code == 200 and "Delete this endpoint?" in confirm.content.decode()
    assert WebhookEndpoint.objects.exists()
    done = client.post(endpoint_url(issued.endpoint, "delete/"))
    assert done.status_code == 302 and done["Location"] == PAGE
    assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()
    assert not WebhookDeliveryAttempt.objects.exists()
    assert AuditEvent.objects.filter(action="webhook_endpoint.deleted").exists()


def test_the_delivery_log_shows_status_response_code_and_attempts(verified_client, tenant, receiver):
    receiver.answer(500, b"database down")
    issued = register(tenant, receiver)
    succeeded_payment(tenant)
    delivery = WebhookDelivery.objects.get()
    webhook_delivery_attempt(delivery_pk=delivery.pk)
    client = verified_client(tenant.owner)
    log = client.get(endpoint_url(issued.endpoint)).content.decode()
    assert "payment.succeeded" in log and delivery.event_id in log and ">500<" in log
    assert "Resend" in log and "Pending" in log
    detail = client.get(endpoint_url(issued.endpoint, f"deliveries/{delivery.public_id}/")).content.decode()
    assert "database down" in detail and "The endpoint answered 500." in detail and " ms<" in detail
    assert "&quot;type&quot;: &quot;payment.succeeded&quot;" in detail


def _queries(client, path: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(path).status_code == 200
    return len(ctx.captured_queries)


def test_endpoint_list_and_delivery_log_queries_do_not_grow(verified_client, tenant, receiver):
    client = verified_client(tenant.owner)
    issued = register(tenant, receiver)
    succeeded_payment(tenant)
    client.get(PAGE)
    small_list = _queries(client, PAGE)
    small_log = _queries(client, endpoint_url(issued.endpoint))
    for _ in range(5):
        register(tenant, receiver)
    for _ in range(8):
        succeeded_payment(tenant)
    for delivery in WebhookDelivery.objects.filter(endpoint=issued.endpoint):
        webhook_delivery_attempt(delivery_pk=delivery.pk)
    assert _queries(client, PAGE) == small_list
    assert _queries(client, endpoint_url(issued.endpoint)) == small_log
