"""PII-safe structured logging: a redaction filter and a JSON formatter.

``RedactingFilter`` is installed on every handler in ``settings.LOGGING`` (a
handler filter sees records from every logger that reaches it, propagated or
not). It renders the message, then replaces:

* card numbers (13-19 digits, spaces or dashes allowed, Luhn-valid),
* email addresses, IBANs, US social security numbers,
* bearer/basic credentials, Stripe keys (``sk_live_``, ``sk_test_``,
  ``rk_live_``/``rk_test_``, ``whsec_``),
* values of keys that name secrets or card data (``password``, ``secret``,
  ``token``, ``api_key``, ``private_key`` (Braintree), ``cvc``, ``cvv``,
  ``security_code``...), in ``key=value``/JSON text and in ``extra={...}``,
* secrets carried in URL paths (an invitation token, a password-reset key),
  registered by the app that owns the URL with :func:`register_secret_path`,
  also percent-encoded (a ``?next=`` parameter),

in the message, the formatted traceback and the stack info. ``JSONFormatter``
writes one JSON object per line and summarises a ``request`` extra as its
method and redacted path: never headers or body.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from datetime import UTC, datetime
from typing import Any

from security.pan import find_card_numbers

SENSITIVE_KEYS = re.compile(
    r"(?i)^(?:.*(?:password|passwd|passphrase|secret|token|api[_-]?key|private[_-]?key|authorization|"
    r"cookie|session[_-]?id|signature)|pwd|cvc2?|cvv2?|cid|csc|security[_-]?code|card[_-]?code|"
    r"card[_-]?verification.*|pan|card[_-]?number|cardnumber|ssn|iban)$"
)
_KEY_WORDS = (
    r"password|passwd|passphrase|pwd|secret|client_secret|token|access_token|refresh_token|api[_-]?key|"
    r"private[_-]?key|cvc2?|cvv2?|cid|csc|security[_-]?code|card[_-]?code|card[_-]?number|pan"
)
# The key is the keyword that ends a name (``password``, ``stripe_api_key``, ``x-api-key``):
# only the keyword is matched and the rest of the name left as it is. (Matching the name from
# its start, ``\b[\w-]*(?:...)``, backtracked over every hyphenated word: a 4 KB path such as
# ``/a-a-a-...`` in a "Not Found" line took a second of CPU.)
_KEY_VALUE = re.compile(
    r"(?i)(?P<key>(?:" + _KEY_WORDS + r")\b)(?P<sep>[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\s\"'&,;}<>]+)"
)
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 [REDACTED]"),
    (re.compile(r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]+"), "[REDACTED stripe-key]"),
    (re.compile(r"\bwhsec_[0-9A-Za-z+/=]+"), "[REDACTED stripe-webhook-secret]"),
    (
        re.compile(
            # The local part starts a run of its characters and never gives one back: a long
            # word without "@" costs one pass, not one per starting position (quadratic).
            r"(?<![A-Za-z0-9.!#$%&'*+/=?^_`{|}~-])[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]++"
            r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+"
        ),
        "[REDACTED email]",
    ),  # fmt: skip
    (re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"), "[REDACTED iban]"),
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), "[REDACTED ssn]"),
]


# Path segments that are secrets, registered by the apps that own those URLs.
_SECRET_PATHS: dict[tuple[str, str], re.Pattern[str]] = {}
_SEGMENT = r"[^/?#&\s\"'%<>]+"
SECRET_PATH_MARK = "[REDACTED]"  # noqa: S105 - the marker, not a secret


def register_secret_path(prefix: str, segment: str = _SEGMENT) -> None:
    """Redact the path segment after ``prefix`` (``"/invite/"``) wherever a URL is logged.

    ``segment`` is the regular expression of that segment (by default anything up to the next
    ``/``, ``?`` or ``&``). The prefix also matches percent-encoded (``%2Finvite%2F``), as in a
    ``?next=`` parameter. Logged as ``/invite/[REDACTED]/``.
    """
    raw = re.escape(prefix)
    encoded = re.escape(prefix).replace("/", "%2[Ff]")
    _SECRET_PATHS[(prefix, segment)] = re.compile(f"((?:{raw}|{encoded})){segment}")


def redact_secret_paths(text: str) -> str:
    """``text`` with the secret segments of registered URL paths replaced."""
    for pattern in _SECRET_PATHS.values():
        text = pattern.sub(lambda m: m.group(1) + SECRET_PATH_MARK, text)
    return text


def _redact_cards(text: str) -> str:
    spans = find_card_numbers(text)
    if not spans:
        return text
    out, last = [], 0
    for start, end in spans:
        out.append(text[last:start])
        out.append("[REDACTED card]")
        last = end
    out.append(text[last:])
    return "".join(out)


def redact(text: str) -> str:
    """``text`` with every kind of secret and personal data above replaced."""
    if not text:
        return text
    text = redact_secret_paths(text)
    text = _KEY_VALUE.sub(lambda m: f"{m.group('key')}{m.group('sep')}[REDACTED]", text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _redact_cards(text)


def redact_value(key: str, value: Any, depth: int = 0) -> Any:
    """Redact a structured value (an ``extra`` field): by key name, then by content."""
    if SENSITIVE_KEYS.match(str(key)):
        return "[REDACTED]"
    if depth > 5:
        return "[…]"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(key, v, depth + 1) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return (
            redact(str(value))
            if isinstance(value, int) and not isinstance(value, bool) and value > 10**12
            else value
        )
    return redact(str(value))


_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Rewrites the record in place so no handler after it sees the raw text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not drop the record
            message = f"{record.msg!r} (unformattable arguments)"
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info))
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key in list(record.__dict__):
            if key in _STANDARD or key == "request":
                continue
            record.__dict__[key] = redact_value(key, record.__dict__[key])
        return True


def _request_summary(request: Any) -> dict[str, Any]:
    return {
        "method": str(getattr(request, "method", "")),
        "path": redact(str(getattr(request, "path", ""))),
    }


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        from security.context import current

        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current().request_id
        if request_id:
            data["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key in _STANDARD:
                continue
            if key == "request":
                data["request"] = _request_summary(value)
            elif isinstance(value, str | int | float | bool | type(None) | dict | list):
                data[key] = value
            else:
                data[key] = redact(str(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = record.stack_info
        return json.dumps(data, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """The human-readable format for development; the same redaction applies before it."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
