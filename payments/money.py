"""Money: an integer number of minor units plus an ISO 4217 currency code.

One table, :data:`CURRENCY_EXPONENTS`, gives each currency's exponent (the
number of digits after the decimal point in its minor unit) as Stripe counts
it. Stripe, Braintree and our own tables all agree on these numbers, so an
amount stored here can be sent to any gateway unchanged.

No floats anywhere: user input arrives as text and is parsed with
:class:`decimal.Decimal`; display goes through :func:`format_minor`.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from security.errors import ApplicationError

# The code lists are written as words, not one quoted string per line, so the table reads
# like Stripe's own lists (hence the SIM905 exemptions).
# Zero-decimal currencies as Stripe lists them: an amount of 500 JPY is sent as 500.
ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())  # noqa: SIM905
# Three-decimal currencies: 1.500 KWD is sent as 1500.
THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())  # noqa: SIM905
# Every other currency we accept has two decimals. ISK, HUF and TWD are two-decimal
# in Stripe's API too (Stripe then requires whole-unit amounts for some of them;
# that is a gateway rule, not a property of the money).
TWO_DECIMAL = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BWP
    BYN BZD CAD CDF CHF CNY COP CRC CVE CZK DKK DOP DZD EGP ETB EUR FJD FKP GBP GEL
    GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR ISK JMD KES KGS KHR KYD KZT LAK LBP
    LKR LRD LSL MAD MDL MKD MMK MNT MOP MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR
    NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SEK SGD SHP SLE SOS SRD
    SZL THB TJS TOP TRY TTD TWD TZS UAH USD UYU UZS WST XCD YER ZAR ZMW
    """.split()  # noqa: SIM905
)

CURRENCY_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(sorted(TWO_DECIMAL), 2),
    **dict.fromkeys(sorted(ZERO_DECIMAL), 0),
    **dict.fromkeys(sorted(THREE_DECIMAL), 3),
}

# Large enough for any real payment, small enough for a 64-bit column.
MAX_MINOR_AMOUNT = 10**15 - 1

_AMOUNT_RE = re.compile(r"(?P<units>\d+)(?:\.(?P<fraction>\d+))?")
_CODE_RE = re.compile(r"[A-Za-z]{3}")


def normalize_currency(code: object) -> str:
    """Return the upper-case ISO 4217 code, or raise if we do not support it."""
    if not isinstance(code, str) or not _CODE_RE.fullmatch(code.strip()):
        raise ApplicationError(
            f"{code!r} is not a currency code; use a three-letter ISO 4217 code such as EUR.",
            code="invalid_currency",
        )
    upper = code.strip().upper()
    if upper not in CURRENCY_EXPONENTS:
        raise ApplicationError(f"The currency {upper} is not supported.", code="unsupported_currency")
    return upper


def exponent(code: str) -> int:
    """Digits after the decimal point in ``code``'s minor unit (JPY 0, EUR 2, KWD 3)."""
    return CURRENCY_EXPONENTS[normalize_currency(code)]


def to_minor(value: str | Decimal, code: str) -> int:
    """Parse a decimal amount such as ``"12.34"`` into minor units (1234 for EUR).

    Accepts plain digits with an optional fractional part (or a finite
    :class:`~decimal.Decimal`). Rejects floats, signs, exponents, thousands
    separators, negative amounts, unknown currencies and more precision than the
    currency has: ``"10.005"`` EUR and ``"1.5"`` JPY are errors. Trailing zeros
    lose nothing, so ``"12.340"`` EUR is 1234 and ``"100.0"`` JPY is 100.
    """
    currency = normalize_currency(code)
    digits = CURRENCY_EXPONENTS[currency]
    if isinstance(value, bool | float):
        raise ApplicationError(
            "Amounts must be given as text or Decimal, never as a floating-point number.",
            code="invalid_amount",
        )
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ApplicationError("The amount must be a number.", code="invalid_amount")
        if value < 0:
            raise ApplicationError("The amount must not be negative.", code="invalid_amount")
        text = format(value, "f")
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ApplicationError("The amount must be a number.", code="invalid_amount")

    if text.startswith("-"):
        raise ApplicationError("The amount must not be negative.", code="invalid_amount")
    match = _AMOUNT_RE.fullmatch(text)
    if match is None:
        raise ApplicationError(
            f"{value!s:.40} is not an amount; write it like 12.34.",
            code="invalid_amount",
        )
    fraction = match.group("fraction") or ""
    significant = fraction.rstrip("0")
    if len(significant) > digits:
        if digits == 0:
            detail = f"{currency} has no minor unit, so amounts must be whole numbers."
        else:
            detail = f"{currency} amounts have at most {digits} decimal places."
        raise ApplicationError(f"{text} has too many decimal places: {detail}", code="invalid_amount")
    try:
        minor = int(match.group("units")) * 10**digits + int(significant.ljust(digits, "0") or "0")
    except (ValueError, InvalidOperation) as exc:  # pragma: no cover - the regex already guards this
        raise ApplicationError("The amount must be a number.", code="invalid_amount") from exc
    if minor > MAX_MINOR_AMOUNT:
        raise ApplicationError("The amount is too large.", code="invalid_amount")
    return minor


def to_decimal(amount: int, code: str) -> Decimal:
    """Minor units back to an exact Decimal in major units (1234 EUR -> Decimal("12.34"))."""
    _check_minor(amount)
    digits = exponent(code)
    return Decimal(amount).scaleb(-digits).quantize(Decimal(1).scaleb(-digits))


def from_decimal(value: Decimal | str, code: str) -> int:
    """An exact major-unit Decimal from a gateway (Braintree's ``"12.34"``) to minor units.

    Unlike :func:`to_minor` this accepts negative values, because gateways report
    credits with a sign.
    """
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except InvalidOperation as exc:
            raise ApplicationError("The amount must be a number.", code="invalid_amount") from exc
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ApplicationError("The amount must be a number.", code="invalid_amount")
    sign = -1 if value < 0 else 1
    return sign * to_minor(abs(value), code)


def format_minor(amount: int, code: str, *, with_code: bool = True) -> str:
    """Human-readable amount: ``format_minor(123456, "EUR") == "1,234.56 EUR"``."""
    _check_minor(amount)
    currency = normalize_currency(code)
    digits = CURRENCY_EXPONENTS[currency]
    sign = "-" if amount < 0 else ""
    units, fraction = divmod(abs(amount), 10**digits)
    text = f"{sign}{units:,}"
    if digits:
        text += f".{fraction:0{digits}d}"
    return f"{text} {currency}" if with_code else text


def _check_minor(amount: object) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ApplicationError("Amounts in minor units must be integers.", code="invalid_amount")


__all__ = [
    "CURRENCY_EXPONENTS",
    "MAX_MINOR_AMOUNT",
    "THREE_DECIMAL",
    "ZERO_DECIMAL",
    "exponent",
    "format_minor",
    "from_decimal",
    "normalize_currency",
    "to_decimal",
    "to_minor",
]
