"""Money is minor units plus a currency; the exponents match Stripe's."""

from __future__ import annotations

from decimal import Decimal

import pytest

from payments import money
from security.errors import ApplicationError

ZERO = ["BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA"]
ZERO += ["PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"]
THREE = ["BHD", "JOD", "KWD", "OMR", "TND"]


@pytest.mark.parametrize("code", ZERO)
def test_zero_decimal_currencies_have_exponent_zero(code: str) -> None:
    assert money.exponent(code) == 0


@pytest.mark.parametrize("code", THREE)
def test_three_decimal_currencies_have_exponent_three(code: str) -> None:
    assert money.exponent(code) == 3


@pytest.mark.parametrize("code", ["EUR", "USD", "GBP", "ISK", "HUF", "TWD", "INR", "CHF"])
def test_other_currencies_have_exponent_two(code: str) -> None:
    assert money.exponent(code) == 2


def test_the_table_has_only_exponents_zero_two_and_three() -> None:
    assert set(money.CURRENCY_EXPONENTS.values()) == {0, 2, 3}
    assert all(len(code) == 3 and code.isupper() for code in money.CURRENCY_EXPONENTS)


def test_currency_codes_are_case_insensitive() -> None:
    assert money.exponent("jpy") == 0
    assert money.normalize_currency(" eur ") == "EUR"


@pytest.mark.parametrize(
    ("text", "code", "minor"),
    [
        ("12.34", "EUR", 1234),
        ("12", "EUR", 1200),
        ("12.3", "EUR", 1230),
        ("0.01", "USD", 1),
        ("0", "USD", 0),
        ("12.340", "EUR", 1234),  # trailing zeros lose nothing
        ("1000000.00", "GBP", 100000000),
        ("500", "JPY", 500),
        ("100.0", "JPY", 100),
        ("1.500", "KWD", 1500),
        ("0.001", "BHD", 1),
        ("7", "TND", 7000),
        ("  9.99 ", "usd", 999),
        (Decimal("12.34"), "EUR", 1234),
        (Decimal("5"), "JPY", 5),
    ],
)
def test_to_minor_parses_decimal_text(text: str | Decimal, code: str, minor: int) -> None:
    assert money.to_minor(text, code) == minor


@pytest.mark.parametrize(
    ("text", "code", "fragment"),
    [
        ("10.005", "EUR", "at most 2 decimal places"),
        ("1.5", "JPY", "whole numbers"),
        ("0.0001", "KWD", "at most 3 decimal places"),
        ("-1.00", "EUR", "must not be negative"),
        (Decimal("-3"), "EUR", "must not be negative"),
        ("abc", "EUR", "is not an amount"),
        ("", "EUR", "is not an amount"),
        ("1e3", "EUR", "is not an amount"),
        ("NaN", "EUR", "is not an amount"),
        ("Infinity", "EUR", "is not an amount"),
        ("1,000.00", "EUR", "is not an amount"),
        ("+5", "EUR", "is not an amount"),
        ("12.", "EUR", "is not an amount"),
        ("12.34", "XYZ", "XYZ is not supported"),
        ("12.34", "EURO", "three-letter ISO 4217 code"),
        ("12.34", "", "three-letter ISO 4217 code"),
        ("10000000000000.00", "EUR", "too large"),
    ],
)
def test_to_minor_rejects_bad_input_with_a_clear_message(text: str, code: str, fragment: str) -> None:
    with pytest.raises(ApplicationError) as info:
        money.to_minor(text, code)
    assert fragment in info.value.message


@pytest.mark.parametrize("value", [12.34, 1.0, True])
def test_to_minor_refuses_floats_and_booleans(value: object) -> None:
    with pytest.raises(ApplicationError, match="never as a floating-point number"):
        money.to_minor(value, "EUR")  # type: ignore[arg-type]


def test_decimal_nan_is_not_an_amount() -> None:
    with pytest.raises(ApplicationError, match="must be a number"):
        money.to_minor(Decimal("NaN"), "EUR")


@pytest.mark.parametrize(
    ("amount", "code", "text"),
    [
        (1234, "EUR", "12.34 EUR"),
        (5, "USD", "0.05 USD"),
        (0, "GBP", "0.00 GBP"),
        (123456789, "EUR", "1,234,567.89 EUR"),
        (5000, "JPY", "5,000 JPY"),
        (1500, "KWD", "1.500 KWD"),
        (1, "BHD", "0.001 BHD"),
        (-250, "EUR", "-2.50 EUR"),
        (1234, "eur", "12.34 EUR"),
    ],
)
def test_format_minor_displays_amounts(amount: int, code: str, text: str) -> None:
    assert money.format_minor(amount, code) == text


def test_format_minor_can_leave_out_the_code() -> None:
    assert money.format_minor(1234, "EUR", with_code=False) == "12.34"


@pytest.mark.parametrize("amount", [12.5, "12", True, None])
def test_format_minor_refuses_non_integers(amount: object) -> None:
    with pytest.raises(ApplicationError, match="must be integers"):
        money.format_minor(amount, "EUR")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "code", "value"),
    [(1234, "EUR", "12.34"), (500, "JPY", "500"), (1500, "KWD", "1.500"), (7, "USD", "0.07")],
)
def test_to_decimal_and_back_round_trips(amount: int, code: str, value: str) -> None:
    decimal = money.to_decimal(amount, code)
    assert str(decimal) == value
    assert money.from_decimal(decimal, code) == amount


def test_from_decimal_keeps_the_sign_of_gateway_credits() -> None:
    assert money.from_decimal("-12.34", "EUR") == -1234
    assert money.from_decimal(Decimal("100.00"), "USD") == 10000
