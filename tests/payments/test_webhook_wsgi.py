"""The webhook WSGI fast path (``fintech_portal.webhook_wsgi``), driven as gunicorn drives it.

Each test calls the WSGI application that gunicorn serves with a real WSGI environ. What
must hold: a signed event is stored once and acknowledged without Django's request
machinery; every refusal stores nothing; anything unusual (a card number, a GET, plain
HTTP with TLS redirects on) is answered by Django exactly as before; the responses carry
the same security headers; a broken database connection gives one 500 and heals.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections, connection

from fintech_portal.webhook_wsgi import webhook_fast_path
from payments.gateways import registry
from payments.gateways.simulated import build_signed_event
from payments.models import Payment, WebhookEvent
from security.models import AuditEvent
from tests.payments.conftest import make_braintree_gateway
from tests.payments.helpers import latest_payment, new_session

pytestmark = pytest.mark.django_db


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class CountingDjango:
    """The real Django application, counting the requests that reach it.

    Built at its first request, so the middleware reads the settings as the test left them.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.handler: WSGIHandler | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.calls += 1
        self.handler = self.handler or WSGIHandler()
        return self.handler(environ, start_response)


class UnreadableInput(io.BytesIO):
    def read(self, *args: Any) -> bytes:  # noqa: ARG002
        raise AssertionError("the body of an oversized webhook must not be read")


@pytest.fixture
def django_app() -> CountingDjango:
    return CountingDjango()


@pytest.fixture
def app(django_app: CountingDjango) -> Any:
    return webhook_fast_path(django_app)


@contextmanager
def connections_kept(keep: bool) -> Iterator[None]:
    """Hold back Django's connection closing as its test client does, so the test's transaction
    survives the request (the last test lets it run, on committed data)."""
    if keep:
        signals.request_started.disconnect(close_old_connections)
        signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        if keep:
            signals.request_started.connect(close_old_connections)
            signals.request_finished.connect(close_old_connections)


def call(
    app: Any,
    path: str,
    body: bytes = b"",
    *,
    method: str = "POST",
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    query: str = "",
    secure: bool = True,
    stream: io.BytesIO | None = None,
    content_length: int | None = None,
    chunked: bool = False,
    keep_connections: bool = True,
) -> Answer:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SCRIPT_NAME": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "443" if secure else "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body) if content_length is None else content_length),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https" if secure else "http",
        "wsgi.input": stream or io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if chunked:  # as gunicorn passes a chunked body: no length, the stream ends by itself
        del environ["CONTENT_LENGTH"]
        environ["wsgi.input_terminated"] = True
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    seen: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"] = int(status.split()[0])
        seen["headers"] = dict(response_headers)

    with connections_kept(keep_connections):
        chunks = app(environ, start_response)
        try:
            content = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # what gunicorn does: Django sends request_finished here
    return Answer(seen["status"], seen["headers"], content)


def started_payment(client, tenant) -> Payment:
    session = new_session(tenant)
    client.get(f"/pay/{session.public_id}/")
    return latest_payment(session)


def stripe_event(payment: Payment, event_id: str, *, description: str = "") -> tuple[bytes, dict[str, str]]:
    from payments.models import SimulatedIntent

    intent = dict(SimulatedIntent.objects.get(intent_id=payment.gateway_payment_id).data["intent"])
    intent |= {"status": "processing", "description": description or None}
    body, headers = build_signed_event(
        "payment_intent.processing",
        intent,
        secret=registry.stripe_webhook_secrets()[0],
        event_id=event_id,
        created=int(time.time()),
    )
    return body, {"Stripe-Signature": headers["Stripe-Signature"]}


def test_a_signed_event_is_stored_once_without_django_and_a_redelivery_is_acknowledged(
    app, django_app, client, tenant
):
    payment = started_payment(client, tenant)
    body, headers = stripe_event(payment, "evt_fast1")

    first = call(app, "/webhooks/stripe/", body, headers=headers)
    again = call(app, "/webhooks/stripe/", body, headers=headers)

    assert (first.status, first.json()) == (200, {"received": True, "duplicate": False})
    assert (again.status, again.json()) == (200, {"received": True, "duplicate": True})
    assert first.headers["Content-Type"] == "application/json"
    assert WebhookEvent.objects.filter(event_id="evt_fast1").count() == 1
    assert django_app.calls == 0


def test_the_fast_path_answers_with_the_same_security_headers_as_django(app, client, tenant, settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    payment = started_payment(client, tenant)
    fast_body, fast_headers = stripe_event(payment, "evt_hdr_fast")
    slow_body, slow_headers = stripe_event(payment, "evt_hdr_django")

    fast = call(app, "/webhooks/stripe/", fast_body, headers=fast_headers)
    slow = client.post(
        "/webhooks/stripe/",
        data=slow_body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=slow_headers["Stripe-Signature"],
        secure=True,
    )

    assert fast.status == slow.status_code == 200
    assert fast.body == slow.content
    compared = (
        "Content-Type",
        "Strict-Transport-Security",
        "X-Content-Type-Options",
        "Referrer-Policy",
        "Cross-Origin-Opener-Policy",
        "X-Frame-Options",
        "Content-Security-Policy",
    )
    assert {name: fast.headers.get(name) for name in compared} == {
        name: slow.get(name) for name in compared
    } | {"Content-Security-Policy": fast.headers["Content-Security-Policy"]}
    # django-csp does not keep the directives in one order from one response to the next.
    assert set(fast.headers["Content-Security-Policy"].split("; ")) == set(
        slow["Content-Security-Policy"].split("; ")
    )
    assert fast.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert "Set-Cookie" not in fast.headers


def test_a_wrongly_signed_event_gets_400_and_stores_nothing(app, django_app, client, tenant):
    payment = started_payment(client, tenant)
    body, _headers = stripe_event(payment, "evt_fast_bad")

    answer = call(app, "/webhooks/stripe/", body, headers={"Stripe-Signature": "t=1,v1=00"})

    assert answer.status == 400
    assert answer.json()["error"]["code"] == "bad_signature"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert WebhookEvent.objects.count() == 0
    assert django_app.calls == 0


def test_an_oversized_event_is_refused_unread(app, django_app):
    answer = call(
        app,
        "/webhooks/stripe/",
        stream=UnreadableInput(),
        content_length=1024 * 1024 + 1,
        headers={"Stripe-Signature": "t=1,v1=00"},
    )

    assert answer.status == 400
    assert answer.json()["error"] == {"code": "too_large", "message": "Webhook bodies are limited to 1 MB."}
    assert WebhookEvent.objects.count() == 0
    assert django_app.calls == 0


def test_a_card_number_in_an_event_goes_to_djangos_guard_which_refuses_and_audits_it(
    app, django_app, client, tenant
):
    payment = started_payment(client, tenant)
    body, headers = stripe_event(payment, "evt_fast_pan", description="card 4242 4242 4242 4242")

    answer = call(app, "/webhooks/stripe/", body, headers=headers)

    assert answer.status == 400
    assert "card number" in answer.body.decode()
    assert django_app.calls == 1
    assert WebhookEvent.objects.count() == 0
    refused = AuditEvent.objects.get(action="security.card_number_refused")
    assert refused.details["path"] == "/webhooks/stripe/" and refused.details["where"] == "json"
    assert "4242" not in json.dumps(refused.details)


def test_a_card_number_in_a_form_posted_webhook_is_refused_too(app, django_app):
    body = b"bt_signature=abc&bt_payload=def&note=4242+4242+4242+4242"

    answer = call(app, "/webhooks/braintree/", body, content_type="application/x-www-form-urlencoded")

    assert answer.status == 400 and "card number" in answer.body.decode()
    assert django_app.calls == 1
    assert AuditEvent.objects.get(action="security.card_number_refused").details["where"] == "form"
    assert WebhookEvent.objects.count() == 0


def test_other_methods_query_strings_and_plain_http_are_left_to_django(
    app, django_app, client, tenant, settings
):
    payment = started_payment(client, tenant)
    body, headers = stripe_event(payment, "evt_fast_q")
    settings.SECURE_SSL_REDIRECT = True

    get = call(app, "/webhooks/stripe/", method="GET", content_length=0)
    with_query = call(app, "/webhooks/stripe/", body, headers=headers, query="x=1")
    plain = call(app, "/webhooks/stripe/", body, headers=headers, secure=False)
    chunked = call(app, "/webhooks/stripe/", body, headers=headers, chunked=True)

    assert get.status == 405
    assert (with_query.status, with_query.json()["received"]) == (200, True)
    assert plain.status == 301 and plain.headers["Location"].startswith("https://")
    # Django 5.2 reads no body without a length, so a chunked delivery verifies nothing, as before.
    assert (chunked.status, chunked.json()["error"]["code"]) == (400, "bad_signature")
    assert django_app.calls == 4
    assert WebhookEvent.objects.filter(event_id="evt_fast_q").count() == 1


def test_a_braintree_notification_takes_the_fast_path(app, django_app, settings, braintree_fake):
    settings.BRAINTREE_ENVIRONMENT = "sandbox"
    settings.BRAINTREE_MERCHANT_ID = braintree_fake.merchant_id
    settings.BRAINTREE_PUBLIC_KEY = braintree_fake.public_key
    settings.BRAINTREE_PRIVATE_KEY = braintree_fake.private_key
    settings.BRAINTREE_API_URL = braintree_fake.url
    sample = make_braintree_gateway(braintree_fake).sdk.webhook_testing.sample_notification(
        "transaction_settled", "txn_fast"
    )
    body = urlencode({"bt_signature": sample["bt_signature"], "bt_payload": sample["bt_payload"]}).encode()

    answer = call(app, "/webhooks/braintree/", body, content_type="application/x-www-form-urlencoded")

    assert (answer.status, answer.json()) == (200, {"received": True, "duplicate": False})
    assert WebhookEvent.objects.get().object_id == "txn_fast"
    assert django_app.calls == 0


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="a connection that breaks needs a database server"
)
@pytest.mark.django_db(transaction=True)
def test_a_broken_database_connection_gives_one_500_then_heals(django_app, client, tenant, caplog):
    app = webhook_fast_path(django_app)
    payment = started_payment(client, tenant)
    first_body, first_headers = stripe_event(payment, "evt_fast_db1")
    retry_body, retry_headers = stripe_event(payment, "evt_fast_db2")
    connection.ensure_connection()
    connection.connection.close()  # the server went away under a kept connection

    broken = call(app, "/webhooks/stripe/", first_body, headers=first_headers, keep_connections=False)
    healed = call(app, "/webhooks/stripe/", retry_body, headers=retry_headers, keep_connections=False)

    assert broken.status == 500
    assert broken.json()["error"]["code"] == "server_error"
    assert b"Traceback" not in broken.body
    assert "Internal Server Error: /webhooks/stripe/" in caplog.text
    assert healed.status == 200
    assert list(WebhookEvent.objects.values_list("event_id", flat=True)) == ["evt_fast_db2"]
