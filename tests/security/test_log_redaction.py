"""Logs never contain card numbers, personal data or secrets, whichever logger writes them."""

from __future__ import annotations

import io
import json
import logging
import secrets

import pytest
from django.conf import settings
from django.test import RequestFactory

from security.logs import RedactingFilter, redact

CARD = "4242 4242 4242 4242"
CARD_DASHED = "5555-5555-5555-4444"
AMEX = "378282246310005"
EMAIL = "jane.doe@example.com"
IBAN = "GB82 WEST 1234 5698 7654 32"
SSN = "078-05-1120"


def secret_values() -> dict[str, str]:
    """Built at run time so nothing key-shaped is committed."""
    token = secrets.token_urlsafe(24)
    return {
        "stripe_live": "sk_" + "live_" + secrets.token_hex(16),
        "stripe_test": "sk_" + "test_" + secrets.token_hex(16),
        "stripe_restricted": "rk_" + "live_" + secrets.token_hex(16),
        "stripe_webhook": "whsec_" + secrets.token_hex(16),
        "bearer": token,
        "braintree_private": secrets.token_hex(16),
        "password": "Tr0ub4dor&" + secrets.token_hex(4),
        "cvc": "737",
    }


def messages_for(values: dict[str, str]) -> list[tuple[str, dict]]:
    return [
        (f"charging card {CARD} for order 17", {}),
        (f"card={CARD_DASHED}", {}),
        (f"amex {AMEX} declined", {}),
        (f"signup from {EMAIL}", {}),
        (f"payout to IBAN {IBAN}", {}),
        (f"ssn on file {SSN}", {}),
        (f"Authorization: Bearer {values['bearer']}", {}),
        (f"stripe key {values['stripe_live']} and {values['stripe_test']}", {}),
        (f"restricted {values['stripe_restricted']} webhook {values['stripe_webhook']}", {}),
        (f"braintree private_key={values['braintree_private']}", {}),
        (f'login payload {{"email": "x", "password": "{values["password"]}"}}', {}),
        ("card details", {"cvc": values["cvc"], "card": {"number": CARD, "exp": "12/30"}}),
        ("login attempt", {"password": values["password"], "private_key": values["braintree_private"]}),
    ]


def forbidden(values: dict[str, str]) -> list[str]:
    return [
        CARD, CARD.replace(" ", ""), CARD_DASHED, AMEX, EMAIL, IBAN, IBAN.replace(" ", ""), SSN,
        *(v for k, v in values.items() if k != "cvc"), '"cvc": "737"',
    ]  # fmt: skip


def configured_logger_names() -> list[str]:
    return ["", *settings.LOGGING["loggers"]]


def configured_handlers(name: str) -> list[logging.Handler]:
    """The handlers settings.LOGGING attached (pytest adds its own capture handlers to the root)."""
    return [h for h in logging.getLogger(name).handlers if h.get_name() in settings.LOGGING["handlers"]]


@pytest.fixture
def captured() -> io.StringIO:
    """Point every configured handler at one buffer (their filters and formatters unchanged)."""
    buffer = io.StringIO()
    handlers = {h for name in configured_logger_names() for h in configured_handlers(name)}
    assert handlers
    old = {h: h.setStream(buffer) for h in handlers if isinstance(h, logging.StreamHandler)}
    yield buffer
    for handler, stream in old.items():
        handler.setStream(stream)


def test_every_configured_handler_runs_the_redaction_filter_first() -> None:
    for name in configured_logger_names():
        assert configured_handlers(name), name
        for handler in configured_handlers(name):
            assert handler.filters and isinstance(handler.filters[0], RedactingFilter), (name, handler)


@pytest.mark.parametrize("logger_name", configured_logger_names())
def test_nothing_sensitive_reaches_the_output_of_any_logger(captured, logger_name: str) -> None:
    values = secret_values()
    logger = logging.getLogger(logger_name or "root")
    if not logger_name:
        logger = logging.getLogger()
    for message, extra in messages_for(values):
        logger.error(message, extra={"ctx": extra} if extra else None)
        logger.error("with args %s and %s", CARD, EMAIL)
    try:
        raise ValueError(f"failed for {EMAIL} with card {CARD}")
    except ValueError:
        logger.exception("payment failed")
    output = captured.getvalue()
    assert output.count("\n") >= 27
    for value in forbidden(values):
        assert value not in output, (logger_name, value)
    assert "[REDACTED card]" in output and "[REDACTED email]" in output
    for line in output.splitlines():
        json.loads(line)  # structured: one JSON object per line


def test_django_request_logger_never_prints_the_request_body(captured) -> None:
    values = secret_values()
    body = json.dumps({"card_number": CARD, "cvc": "123", "email": EMAIL, "password": values["password"]})
    request = RequestFactory().post(
        f"/checkout/?email={EMAIL}",
        data=body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {values['bearer']}",
    )
    logging.getLogger("django.request").error(
        "Internal Server Error: %s body=%s",
        request.path,
        body,
        extra={"status_code": 500, "request": request},
    )
    output = captured.getvalue()
    record = json.loads(output.splitlines()[-1])
    assert record["logger"] == "django.request" and record["status_code"] == 500
    assert record["request"] == {"method": "POST", "path": "/checkout/"}
    for value in [CARD, EMAIL, values["password"], values["bearer"], '"cvc": "123"']:
        assert value not in output


def test_redaction_leaves_ordinary_text_alone() -> None:
    text = "order 1042 paid 25.00 EUR at 2025-05-01T12:00:00Z, ts 1732867200123, otp 123456, id pay_3kT9a"
    assert redact(text) == text
