"""The card-number guard's cost is linear in the body and capped per request; large bodies are refused unread.

Timings live in ``bench/card_guard.py``; these tests bound the guard's own count of its work
(``security.pan.counting``), which does not depend on the machine.
"""

from __future__ import annotations

import io
import json
import random
import sys
from typing import Any

import pytest
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from fintech_portal.webhook_wsgi import webhook_fast_path
from security.body_limits import body_limit
from security.card_guard import (
    CHARS_PER_EXTRA_CHECK,
    CHECKS_PER_REQUEST,
    TOO_LARGE,
    TOO_MANY,
    find_card_in_body,
)
from security.models import AuditEvent
from security.pan import TooManyToCheck, contains_card_number, counting, find_card_numbers

pytestmark = pytest.mark.django_db
SIZE = 60_000  # under the default body limit, so requests reach the guard


def _repeat(unit: str, size: int = SIZE) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def _random_digits(size: int = SIZE) -> str:
    rng = random.Random(7)
    return "".join(rng.choice("0123456789") for _ in range(size))


DIGIT_BODIES = {
    "ones": _repeat("1 "),
    "pairs": _repeat("12 34 "),
    "dashed": _repeat("1-0-1-"),
    "random digits": _random_digits(),
    "zeros in fours": _repeat("0000 1111 "),
}


def _search_cost(text: str) -> tuple[int, int]:
    with counting() as stats:
        contains_card_number(text, strict=True)
    return stats.chars, stats.luhn


@pytest.mark.parametrize("name", DIGIT_BODIES)
def test_a_body_of_digit_groups_costs_at_most_three_times_a_body_of_letters(name) -> None:
    letters, _ = _search_cost(_repeat("abcdefghij"))
    digits, luhn = _search_cost(DIGIT_BODIES[name])
    assert digits <= 3 * letters
    assert luhn == 0


def test_the_worst_digit_groups_cost_a_constant_amount_per_group() -> None:
    # Every group could start a card (first digit 2-6, three digits): the most work a body can ask.
    small, big = _repeat("234 "), _repeat("234 ", 4 * SIZE)
    with counting() as once:
        contains_card_number(small, strict=True)
    with counting() as four_times:
        contains_card_number(big, strict=True)
    groups = SIZE // 4
    assert once.starts <= groups and once.luhn <= 3 * once.starts
    assert once.chars <= 12 * SIZE
    assert four_times.chars <= 4 * once.chars + 1000  # linear: no window is looked at twice


# Bodies in which every group, or every lone number, could be a card: each asks for Python work.
CRAFTED_BODIES = {
    "all starts": _repeat("234 "),
    "all invalid cards": _repeat("4242 4242 4242 4241 "),
    "lone 13-digit numbers": _repeat("2345678901234,"),
}


@pytest.mark.parametrize("name", CRAFTED_BODIES)
def test_the_guard_stops_a_body_crafted_to_be_all_possible_cards_after_a_bounded_number_of_checks(
    name,
) -> None:
    text = CRAFTED_BODIES[name]
    letters, _ = _search_cost(_repeat("abcdefghij"))
    with counting() as stats, pytest.raises(TooManyToCheck):
        find_card_in_body(text.encode(), "text/plain")
    allowed = CHECKS_PER_REQUEST + len(text) // CHARS_PER_EXTRA_CHECK
    assert stats.starts + stats.luhn <= 4 * (allowed + 1)  # at most 3 Luhn checks per start
    assert stats.chars <= 3 * letters


def test_ordinary_numbers_stay_well_inside_the_guards_check_budget() -> None:
    # A page of amounts, phone numbers, dates and one card: the card is found, nothing runs out.
    page = (
        _repeat("paid 1 234,56 EUR on 2026-12-04 call +44 20 7946 0958 order 2345 6789 ")
        + " 4242 4242 4242 4242"
    )
    assert find_card_in_body(page.encode(), "text/plain") == ("body", "")


def test_a_request_crafted_to_be_all_possible_cards_is_refused_with_a_clear_message(client) -> None:
    body = CRAFTED_BODIES["all starts"]
    response = client.post("/accounts/login/", data=body, content_type="text/plain")
    assert response.status_code == 400 and response.content.decode() == TOO_MANY


def test_the_webhook_fast_path_refuses_a_crafted_body_after_one_bounded_search(settings) -> None:
    settings.SECURE_SSL_REDIRECT = False
    app = webhook_fast_path(WSGIHandler())
    body = json.dumps({"note": CRAFTED_BODIES["all starts"]}).encode()
    with counting() as stats:
        status, answer = _call(app, _environ("/webhooks/stripe/", body, len(body), "application/json"))
    assert status == 400 and answer.decode() == TOO_MANY
    # One bounded search: Django's guard, which answers, does not search the body again.
    assert stats.starts <= CHECKS_PER_REQUEST + len(body) // CHARS_PER_EXTRA_CHECK + 1


def test_an_unseparated_digit_string_over_19_digits_is_skipped_whole() -> None:
    inside = "9" + "4242424242424242" + "123"  # 20 digits holding a valid card number
    with counting() as stats:
        assert not contains_card_number(f"ref {inside} ok", strict=True)
        assert not contains_card_number(_random_digits(), strict=True)
    assert stats.luhn == 0 and stats.starts == 0


@pytest.mark.parametrize(
    "text",
    [
        "4242 4242 4242 4242",
        "4242-4242-4242-4242",
        '{"number": "4242424242424242"}',
        "amex 3782 822463 10005 thanks",
        _repeat("1 ") + "4242 4242 4242 4242" + _repeat(" 1", 40),
        _repeat("234 ") + " 5555 5555 5555 4444",
        "qty 12 4242 4242 4242 4242",
        _repeat("0000 1111 ") + "-4000-0566-5566-5556-7",
    ],
    ids=["spaces", "dashes", "json", "amex", "after ones", "after worst", "after a short group", "in a run"],
)
def test_separated_groups_are_still_found(text) -> None:
    assert contains_card_number(text, strict=True)
    assert find_card_numbers(text)


def test_log_redaction_finds_every_card_of_a_long_run() -> None:
    text = "4242 4242 4242 4242 5555 5555 5555 4444"
    assert [text[s:e] for s, e in find_card_numbers(text)] == ["4242 4242 4242 4242", "5555 5555 5555 4444"]


# --- Through requests --------------------------------------------------------------------------


def _environ(path: str, body: bytes | io.RawIOBase, length: int, content_type: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SCRIPT_NAME": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(length),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(body) if isinstance(body, bytes) else body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def _call(app: Any, environ: dict[str, Any]) -> tuple[int, bytes]:
    seen: dict[str, int] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"] = int(status.split()[0])

    # Hold back Django's closing of connections at the end of a request, as its test client
    # does, so the test's transaction survives it.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        result = app(environ, start_response)
        try:
            return seen["status"], b"".join(result)
        finally:
            getattr(result, "close", lambda: None)()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


class _NeverRead(io.RawIOBase):
    """A request body that fails the test if anything reads it."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise AssertionError("the body was read")


@pytest.mark.parametrize("name", ["ones", "pairs", "random digits"])
@pytest.mark.parametrize("url", ["/accounts/login/", "/webhooks/stripe/"])
def test_a_digit_body_costs_a_request_at_most_three_times_a_letter_body(settings, name, url) -> None:
    settings.SECURE_SSL_REDIRECT = False
    app = webhook_fast_path(WSGIHandler())
    costs = {}
    for label, text in (("letters", _repeat("abcdefghij")), ("digits", DIGIT_BODIES[name])):
        body = text.encode()
        with counting() as stats:
            status, _ = _call(app, _environ(url, body, len(body), "application/json"))
        assert status in (200, 302, 400, 403)
        costs[label] = stats.chars
    assert costs["digits"] <= 3 * costs["letters"]


def test_the_webhook_fast_path_searches_a_clean_body_once(settings) -> None:
    settings.SECURE_SSL_REDIRECT = False
    app = webhook_fast_path(WSGIHandler())
    # An escape sends the old fast path to Django, which searched the body all over again.
    body = json.dumps({"note": "line one\nline two", "pad": _repeat("abcdefghij")}).encode()
    with counting() as stats:
        status, answer = _call(app, _environ("/webhooks/stripe/", body, len(body), "application/json"))
    assert status == 400 and b"signature" in answer  # not refused as a card: the webhook's own answer
    assert stats.chars <= len(body) + 100


def test_the_webhook_fast_path_refuses_a_card_without_a_second_search(settings) -> None:
    settings.SECURE_SSL_REDIRECT = False
    app = webhook_fast_path(WSGIHandler())
    body = json.dumps({"note": "4242 4242 4242 4242", "pad": _repeat("abcdefghij")}).encode()
    with counting() as stats:
        status, answer = _call(app, _environ("/webhooks/stripe/", body, len(body), "application/json"))
    assert status == 400 and b"card number" in answer
    event = AuditEvent.objects.get(action="security.card_number_refused")
    assert (event.details["where"], event.details["field"]) == ("json", "$.note")
    assert stats.chars <= 2 * len(body) + 100  # the text, then the values to name the field


# --- Body limits -------------------------------------------------------------------------------


def test_a_page_that_takes_no_upload_refuses_a_large_body_with_413_without_reading_it(settings) -> None:
    settings.SECURE_SSL_REDIRECT = False
    length = 2_500_000
    for url in ("/accounts/login/", "/api/v1/me/", "/webhooks/stripe/"):
        status, answer = _call(WSGIHandler(), _environ(url, _NeverRead(), length, "text/plain"))
        assert status == 413, url
        assert b"too large" in answer and b"2,500,000 bytes" in answer
    api = _call(WSGIHandler(), _environ("/api/v1/me/", _NeverRead(), length, "application/json"))[1]
    assert json.loads(api)["error"]["code"] == "too_large"
    assert (
        b"at most 64 KB" in _call(WSGIHandler(), _environ("/accounts/login/", _NeverRead(), length, "x/y"))[1]
    )
    assert not AuditEvent.objects.exists()


def test_the_test_client_gets_the_same_413(client) -> None:
    response = client.post("/accounts/login/", data="1 " * 40_000, content_type="text/plain")
    assert response.status_code == 413
    assert "at most 64 KB" in response.content.decode()


def test_a_route_named_in_the_setting_takes_its_larger_limit(client, settings) -> None:
    settings.REQUEST_BODY_LIMITS = {**settings.REQUEST_BODY_LIMITS, "account_login": 200_000}
    response = client.post("/accounts/login/", data="a" * 100_000, content_type="text/plain")
    assert response.status_code != 413
    refused = client.post("/accounts/login/", data="a" * 200_001, content_type="text/plain")
    assert refused.status_code == 413 and "at most 200,000 bytes" in refused.content.decode()


@csrf_exempt
@body_limit(300_000)
def _upload(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"got {len(request.body)}")


urlpatterns = [path("upload/", _upload, name="test_upload")]


@pytest.mark.urls(__name__)
def test_an_upload_view_declares_its_own_limit_with_the_decorator(client, settings) -> None:
    settings.PUBLIC_URL_NAMES = frozenset({*settings.PUBLIC_URL_NAMES, "test_upload"})
    response = client.post("/upload/", data="a" * 250_000, content_type="text/plain")
    assert response.status_code == 200 and response.content == b"got 250000"
    assert client.post("/upload/", data="a" * 300_001, content_type="text/plain").status_code == 413


def test_the_guard_refuses_with_413_what_is_over_its_byte_cap(client, settings) -> None:
    settings.CARD_GUARD_MAX_BYTES = 10_000
    response = client.post(
        "/api/v1/me/", data=json.dumps({"pad": "a" * 20_000}), content_type="application/json"
    )
    assert response.status_code == 413 and response.content.decode() == TOO_LARGE


def test_the_guard_never_lets_through_a_body_too_large_for_it_to_read(client, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = client.post(
        "/webhooks/anything/", data="pan " + "x" * 20_000 + " 4242 4242 4242 4242", content_type="text/plain"
    )
    assert response.status_code == 413 and response.content.decode() == TOO_LARGE
