"""A fake of the few Stripe API endpoints our gateway uses, at the HTTP level.

It speaks what the real API speaks: form-encoded POST bodies with bracketed
nested keys (``metadata[payment_id]=...``, ``expand[0]=latest_charge``), JSON
answers, ``Authorization: Bearer sk_test_...``, the ``Stripe-Account`` header
(objects live per account), ``Idempotency-Key`` (same key and parameters: the
first answer is replayed; same key, other parameters: ``idempotency_error``; a key is
forgotten 24 hours after its first use, as Stripe's are),
402 ``card_error`` bodies carrying the PaymentIntent, and Stripe's test
PaymentMethods (``pm_card_visa``, ``pm_card_chargeDeclinedInsufficientFunds``,
``pm_card_threeDSecure2Required``, ``pm_card_radarBlock``...).

Endpoints: ``POST /v1/payment_intents``, ``POST /v1/payment_intents/{id}``
``/confirm``, ``/capture``, ``/cancel``; ``GET /v1/payment_intents/{id}``;
``POST /v1/refunds``; ``GET /v1/refunds`` (list); ``GET /v1/refunds/{id}``; ``GET /v1/charges/{id}``.

Test controls (what a customer or Stripe would do out of band):
:meth:`StripeFake.complete_three_ds` (the customer passes or fails the
challenge), :meth:`StripeFake.hold_processing` (a delayed payment method),
:meth:`StripeFake.finish_refund` (a pending refund settles or fails),
:meth:`StripeFake.fail_next` (transient 500s),
:meth:`~tests.fakes._server.FakeServer.drop_answers` (the work done, the answer lost: a timeout),
:meth:`StripeFake.alter_next_answer` (an answer off Stripe's documented shape),
:meth:`StripeFake.build_event` / :meth:`StripeFake.signed_event` (webhooks
shaped and signed like Stripe's).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import hashlib
import hmac
import json
import re
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes._server import FakeServer, RecordedRequest, Response

API_VERSION = "2026-10-28.endive"
IDEMPOTENCY_KEY_TTL = 24 * 3600  # seconds
_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``[("a[b][0]", "x")]`` -> ``{"a": {"b": ["x"]}}``, the way Stripe reads its bodies."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", key)
        if match is None:
            continue
        path = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for index, part in enumerate(path):
            last = index == len(path) - 1
            if part == "":
                part = str(len(node))
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _listify(root)


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        converted = {k: _listify(v) for k, v in node.items()}
        if converted and all(k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    return node


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("true", "1")


@dataclass(frozen=True)
class FakeCard:
    brand: str
    last4: str
    country: str = "US"
    funding: str = "credit"
    exp_month: int = 12
    exp_year: int = 2034
    code: str | None = None  # API error code when the charge fails
    decline_code: str | None = None
    message: str | None = None
    three_d_secure: str = "supported"  # required, supported, not_supported
    risk_level: str = "normal"
    risk_score: int = 17
    outcome_type: str = "authorized"
    outcome_reason: str | None = None
    network_status: str = "approved_by_network"
    seller_message: str = "Payment complete."
    # What a refund of this card's charge does: "succeeded" at once, "pending" until
    # :meth:`StripeFake.finish_refund`, or "fails_later" (succeeded, then failed).
    refund: str = "succeeded"

    @property
    def declines(self) -> bool:
        return self.code is not None


def _issuer_decline(last4: str, code: str, decline_code: str, message: str) -> FakeCard:
    return FakeCard(
        brand="visa",
        last4=last4,
        code=code,
        decline_code=decline_code,
        message=message,
        outcome_type="issuer_declined",
        outcome_reason=decline_code,
        network_status="declined_by_network",
        seller_message=f"The bank returned the decline code `{decline_code}`.",
    )


_BLOCKED = dict(
    code="card_declined",
    decline_code="fraudulent",
    message="Your card was declined.",
    risk_level="highest",
    risk_score=95,
    outcome_type="blocked",
    outcome_reason="highest_risk_level",
    network_status="not_sent_to_network",
    seller_message="Stripe blocked this payment as too risky.",
)

TEST_CARDS: dict[str, FakeCard] = {
    "pm_card_visa": FakeCard("visa", "4242"),
    "pm_card_visa_debit": FakeCard("visa", "5556", funding="debit"),
    "pm_card_mastercard": FakeCard("mastercard", "4444"),
    "pm_card_amex": FakeCard("amex", "8431"),
    "pm_card_gb": FakeCard("visa", "0002", country="GB"),
    "pm_card_chargeDeclined": _issuer_decline(
        "0002", "card_declined", "generic_decline", "Your card was declined."
    ),
    "pm_card_chargeDeclinedInsufficientFunds": _issuer_decline(
        "9995", "card_declined", "insufficient_funds", "Your card has insufficient funds."
    ),
    "pm_card_chargeDeclinedExpiredCard": _issuer_decline(
        "0069", "expired_card", "expired_card", "Your card has expired."
    ),
    "pm_card_chargeDeclinedIncorrectCvc": _issuer_decline(
        "0127", "incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."
    ),
    "pm_card_chargeDeclinedProcessingError": _issuer_decline(
        "0119",
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
    "pm_card_threeDSecure2Required": FakeCard("visa", "3220", three_d_secure="required"),
    "pm_card_threeDSecureRequired": FakeCard("visa", "3063", three_d_secure="required"),
    "pm_card_radarBlock": FakeCard("visa", "0019", **_BLOCKED),
    "pm_card_chargeDeclinedFraudulent": FakeCard("visa", "0019", **_BLOCKED),
    "pm_card_riskLevelHighest": FakeCard("visa", "4954", **_BLOCKED),
    # Stripe's refund test cards: a refund that stays pending, and one that fails after succeeding.
    "pm_card_pendingRefund": FakeCard("visa", "7726", refund="pending"),
    "pm_card_refundFail": FakeCard("visa", "5126", refund="fails_later"),
    "pm_card_riskLevelElevated": FakeCard(
        "visa", "9235", risk_level="elevated", risk_score=65, seller_message="Payment complete."
    ),
}

AUTH_FAILURE_MESSAGE = (
    "The provided PaymentMethod has failed authentication. You can provide payment_method_data or a new "
    "PaymentMethod to attempt to fulfill this PaymentIntent again."
)


class StripeError(Exception):
    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.status = status
        self.error = error


def _invalid(
    message: str, *, code: str | None = None, param: str | None = None, status: int = 400
) -> StripeError:
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return StripeError(status, error)


class _Account:
    def __init__(self) -> None:
        self.intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.cards: dict[str, FakeCard] = {}  # intent id -> card being authenticated


class StripeFake(FakeServer):
    """See the module docstring. ``api_keys`` limits which secret keys are accepted."""

    def __init__(self, *, api_keys: tuple[str, ...] | list[str] = (), port: int = 0) -> None:
        super().__init__(port=port)
        self.api_keys = set(api_keys)
        self.reset()

    def reset(self) -> None:
        """Forget every object, idempotency key, injected failure and recorded request."""
        with self.lock:
            self.accounts: dict[str, _Account] = {}
            # (account, key) -> (request fingerprint, first answer, when first used)
            self.idempotency: dict[tuple[str, str], tuple[str, Response, float]] = {}
            self.clock_offset = 0.0
            self._failures: list[int] = []
            self._drops.clear()
            self._alterations: list[Callable[[dict[str, Any]], None]] = []
            self.requests.clear()

    # --- test controls ---

    def now(self) -> float:
        """The fake's clock: the real one, moved on by :meth:`advance_clock`."""
        return time.time() + self.clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Let ``seconds`` pass at Stripe (idempotency keys older than 24 hours are forgotten)."""
        with self.lock:
            self.clock_offset += seconds

    def fail_next(self, status: int = 500, count: int = 1) -> None:
        """Answer the next ``count`` API requests with ``status`` (a transient outage)."""
        with self.lock:
            self._failures.extend([status] * count)

    def alter_next_answer(self, alter: Callable[[dict[str, Any]], None]) -> None:
        """Pass a copy of the next successful API answer through ``alter`` before sending it
        (a field missing, or of another type, than Stripe documents); what the fake keeps is
        unchanged. An idempotent replay of that request repeats the altered answer."""
        with self.lock:
            self._alterations.append(alter)

    def account(self, account: str | None = None) -> _Account:
        with self.lock:
            return self.accounts.setdefault(account or "", _Account())

    def intent(self, intent_id: str, account: str | None = None) -> dict[str, Any]:
        return self.account(account).intents[intent_id]

    def complete_three_ds(self, intent_id: str, *, succeed: bool = True, account: str | None = None) -> dict:
        """The customer finishes (or fails) the 3D Secure challenge in their browser."""
        with self.lock:
            acct = self.account(account)
            intent = acct.intents[intent_id]
            if intent["status"] != "requires_action":
                raise RuntimeError(f"{intent_id} is {intent['status']}, not requires_action")
            card = acct.cards.pop(intent_id)
            intent["next_action"] = None
            if succeed:
                with contextlib.suppress(StripeError):  # a decline is recorded on the intent
                    self._charge(acct, intent, card, three_d_secure="authenticated")
            else:
                intent["status"] = "requires_payment_method"
                intent["payment_method"] = None
                intent["last_payment_error"] = {
                    "type": "invalid_request_error",
                    "code": "payment_intent_authentication_failure",
                    "message": AUTH_FAILURE_MESSAGE,
                    "doc_url": "https://stripe.com/docs/error-codes/payment-intent-authentication-failure",
                }
            return intent

    def hold_processing(self, intent_id: str, *, account: str | None = None) -> dict:
        """What a delayed payment method does (SEPA Direct Debit, ACH): the intent waits in
        ``processing`` until the bank answers."""
        with self.lock:
            intent = self.account(account).intents[intent_id]
            intent["status"] = "processing"
            intent["next_action"] = None
            return intent

    def finish_refund(
        self,
        refund_id: str,
        *,
        succeed: bool = True,
        failure_reason: str = "expired_or_canceled_card",
        account: str | None = None,
    ) -> dict:
        """The bank settles a pending refund (``succeed``) or rejects it: Stripe then sends
        ``refund.updated`` (or ``refund.failed``); a failed refund's amount is no longer refunded."""
        with self.lock:
            acct = self.account(account)
            refund = acct.refunds[refund_id]
            if succeed:
                if refund["status"] != "pending":
                    raise RuntimeError(f"{refund_id} is {refund['status']}, not pending")
                refund["status"] = "succeeded"
                return refund
            if refund["status"] not in ("pending", "succeeded"):
                raise RuntimeError(f"{refund_id} is {refund['status']}; it cannot fail now")
            refund["status"] = "failed"
            refund["failure_reason"] = failure_reason
            charge = acct.charges[refund["charge"]]
            charge["amount_refunded"] -= refund["amount"]
            charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
            return refund

    def build_event(
        self, event_type: str, obj: dict[str, Any], *, account: str | None = None, created: int | None = None
    ) -> dict[str, Any]:
        """An event shaped like the ones Stripe sends to webhook endpoints."""
        event: dict[str, Any] = {
            "id": new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(created if created is not None else time.time()),
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        if account:
            event["account"] = account
        return event

    @staticmethod
    def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
        """A ``Stripe-Signature`` header value: ``t=<ts>,v1=<HMAC-SHA256(secret, "<ts>.<payload>")>``."""
        ts = int(timestamp if timestamp is not None else time.time())
        digest = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
        return f"t={ts},v1={digest}"

    def signed_event(
        self,
        event_type: str,
        obj: dict[str, Any],
        secret: str,
        *,
        timestamp: int | None = None,
        account: str | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        payload = json.dumps(self.build_event(event_type, obj, account=account), indent=2).encode()
        return payload, {
            "Stripe-Signature": self.sign(payload, secret, timestamp),
            "Content-Type": "application/json",
        }

    # --- HTTP ---

    def handle(self, request: RecordedRequest) -> Response:
        if request.method == "GET":
            request.params = decode_form(parse_qsl(request.query, keep_blank_values=True))
        else:
            request.params = decode_form(parse_qsl(request.body.decode(), keep_blank_values=True))

        with self.lock:
            if self._failures:
                status = self._failures.pop(0)
                return self._error(StripeError(status, {"type": "api_error", "message": "Fake outage."}))

        auth = request.header("authorization") or ""
        key = auth.removeprefix("Bearer ").strip()
        if auth.startswith("Basic "):  # curl -u sk_test_...: works against Stripe too
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                key = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
        if not key.startswith(("sk_test_", "rk_test_")) or (self.api_keys and key not in self.api_keys):
            return self._error(_invalid("Invalid API Key provided.", status=401))

        account = request.header("stripe-account") or ""
        idem_key = request.header("idempotency-key")
        fingerprint = f"{request.method} {request.path} {json.dumps(request.params, sort_keys=True)}"
        with self.lock:
            if request.method == "POST" and idem_key:
                stored = self.idempotency.get((account, idem_key))
                if stored is not None and self.now() - stored[2] > IDEMPOTENCY_KEY_TTL:
                    del self.idempotency[(account, idem_key)]  # Stripe has forgotten it
                    stored = None
                if stored is not None:
                    if stored[0] != fingerprint:
                        return self._error(
                            StripeError(
                                400,
                                {
                                    "type": "idempotency_error",
                                    "message": "Keys for idempotent requests can only be used with the same "
                                    "parameters they were first used with.",
                                },
                            )
                        )
                    request.replayed = True
                    replay = stored[1]
                    return Response(
                        replay.status,
                        replay.body,
                        replay.content_type,
                        {**replay.headers, "Idempotent-Replayed": "true"},
                    )
            try:
                status, payload = self._route(request, self.account(account))
                if self._alterations:
                    payload = copy.deepcopy(payload)
                    self._alterations.pop(0)(payload)
                response = self._json(status, payload)
            except StripeError as exc:
                response = self._error(exc)
            if request.method == "POST" and idem_key and response.status < 500:
                self.idempotency[(account, idem_key)] = (fingerprint, response, self.now())
            return response

    def _json(self, status: int, payload: Any) -> Response:
        return Response(
            status, json.dumps(payload).encode(), "application/json", {"Request-Id": new_id("req")}
        )

    def _error(self, exc: StripeError) -> Response:
        return self._json(exc.status, {"error": exc.error})

    def _route(self, request: RecordedRequest, acct: _Account) -> tuple[int, Any]:
        params = request.params or {}
        method, path = request.method, request.path.rstrip("/")
        if method == "POST" and path == "/v1/payment_intents":
            return 200, self._create_intent(acct, params)
        match = re.fullmatch(r"/v1/payment_intents/([^/]+)(?:/(confirm|capture|cancel))?", path)
        if match:
            intent = acct.intents.get(match.group(1))
            if intent is None:
                raise _invalid(
                    f"No such payment_intent: '{match.group(1)}'",
                    code="resource_missing",
                    param="intent",
                    status=404,
                )
            action = match.group(2)
            if method == "GET" and action is None:
                return 200, self._expand(acct, intent, params)
            if method == "POST" and action == "confirm":
                return 200, self._confirm(acct, intent, params)
            if method == "POST" and action == "capture":
                return 200, self._capture(acct, intent, params)
            if method == "POST" and action == "cancel":
                return 200, self._cancel(acct, intent, params)
        if method == "POST" and path == "/v1/refunds":
            return 200, self._refund(acct, params)
        if method == "GET" and path == "/v1/refunds":
            return 200, self._list_refunds(acct, params)
        match = re.fullmatch(r"/v1/(refunds|charges)/([^/]+)", path)
        if match and method == "GET":
            store = acct.refunds if match.group(1) == "refunds" else acct.charges
            obj = store.get(match.group(2))
            if obj is None:
                raise _invalid(
                    f"No such {match.group(1)[:-1]}: '{match.group(2)}'", code="resource_missing", status=404
                )
            return 200, obj
        raise _invalid(f"Unrecognized request URL ({method}: {request.path}).", status=404)

    # --- PaymentIntents ---

    def _expand(self, acct: _Account, intent: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        expand = params.get("expand") or []
        out = dict(intent)
        if "latest_charge" in expand and isinstance(intent.get("latest_charge"), str):
            out["latest_charge"] = acct.charges[intent["latest_charge"]]
        return out

    def _create_intent(self, acct: _Account, params: dict[str, Any]) -> dict[str, Any]:
        try:
            amount = int(params.get("amount", ""))
        except ValueError:
            raise _invalid(
                "Missing required param: amount.", code="parameter_missing", param="amount"
            ) from None
        if amount < 1:
            raise _invalid("Amount must be at least 1.", code="amount_too_small", param="amount")
        currency = params.get("currency")
        if not currency:
            raise _invalid("Missing required param: currency.", code="parameter_missing", param="currency")
        intent_id = new_id("pi")
        options = params.get("payment_method_options") or {}
        card_options = options.get("card") or {}
        intent: dict[str, Any] = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "automatic_payment_methods": (
                {"enabled": True, "allow_redirects": "always"}
                if _truthy((params.get("automatic_payment_methods") or {}).get("enabled"))
                else None
            ),
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": params.get("capture_method", "automatic_async"),
            "client_secret": f"{intent_id}_secret_{new_id('s')[2:]}",
            "confirmation_method": "automatic",
            "created": int(time.time()),
            "currency": currency.lower(),
            "description": params.get("description"),
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": params.get("metadata") or {},
            "next_action": None,
            "payment_method": None,
            "payment_method_options": {
                "card": {"request_three_d_secure": card_options.get("request_three_d_secure", "automatic")}
            },
            "payment_method_types": ["card"],
            "receipt_email": params.get("receipt_email"),
            "status": "requires_payment_method",
        }
        acct.intents[intent_id] = intent
        if _truthy(params.get("confirm")):
            return self._confirm(acct, intent, params)
        return self._expand(acct, intent, params)

    def _confirm(self, acct: _Account, intent: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
            raise _invalid(
                f"This PaymentIntent's status is {intent['status']}, so it cannot be confirmed.",
                code="payment_intent_unexpected_state",
            )
        pm = params.get("payment_method") or intent.get("payment_method")
        if not pm:
            raise _invalid(
                "You must provide a payment method.", code="parameter_missing", param="payment_method"
            )
        card = TEST_CARDS.get(pm)
        if card is None:
            raise _invalid(f"No such PaymentMethod: '{pm}'", code="resource_missing", param="payment_method")
        intent["payment_method"] = pm
        intent["last_payment_error"] = None
        request_3ds = intent["payment_method_options"]["card"]["request_three_d_secure"]
        needs_challenge = card.three_d_secure == "required" or (
            request_3ds in ("any", "challenge") and card.three_d_secure == "supported"
        )
        if needs_challenge:
            acct.cards[intent["id"]] = card
            intent["status"] = "requires_action"
            return_url = params.get("return_url")
            if return_url:
                intent["next_action"] = {
                    "type": "redirect_to_url",
                    "redirect_to_url": {
                        "url": f"https://hooks.stripe.com/3d_secure_2/hosted?payment_intent={intent['id']}",
                        "return_url": return_url,
                    },
                }
            else:
                intent["next_action"] = {
                    "type": "use_stripe_sdk",
                    "use_stripe_sdk": {"type": "three_d_secure_redirect"},
                }
            return self._expand(acct, intent, params)
        self._charge(acct, intent, card, three_d_secure=None)
        return self._expand(acct, intent, params)

    def _charge(
        self, acct: _Account, intent: dict[str, Any], card: FakeCard, *, three_d_secure: str | None
    ) -> None:
        charge_id = new_id("ch")
        fingerprint = hashlib.sha256(f"{card.brand}:{card.last4}".encode()).hexdigest()[:16]
        failed = card.declines
        manual = intent["capture_method"] == "manual"
        charge = {
            "id": charge_id,
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": 0 if failed or manual else intent["amount"],
            "amount_refunded": 0,
            "captured": not failed and not manual,
            "created": int(time.time()),
            "currency": intent["currency"],
            "failure_code": card.code if failed else None,
            "failure_message": card.message if failed else None,
            "livemode": False,
            "metadata": dict(intent.get("metadata") or {}),
            "outcome": {
                "network_status": card.network_status,
                "reason": card.outcome_reason,
                "risk_level": card.risk_level,
                "risk_score": card.risk_score,
                "rule": (
                    {
                        "id": "rule_fake_block_highest",
                        "action": "block",
                        "predicate": ":risk_level: = 'highest'",
                    }
                    if card.outcome_type == "blocked"
                    else None
                ),
                "seller_message": card.seller_message,
                "type": card.outcome_type,
            },
            "paid": not failed,
            "payment_intent": intent["id"],
            "payment_method": intent["payment_method"],
            "payment_method_details": {
                "type": "card",
                "card": {
                    "brand": card.brand,
                    "country": card.country,
                    "exp_month": card.exp_month,
                    "exp_year": card.exp_year,
                    "fingerprint": fingerprint,
                    "funding": card.funding,
                    "last4": card.last4,
                    "three_d_secure": (
                        {"result": three_d_secure, "version": "2.2.0", "authentication_flow": "challenge"}
                        if three_d_secure
                        else None
                    ),
                },
            },
            "refunded": False,
            "status": "failed" if failed else "succeeded",
        }
        acct.charges[charge_id] = charge
        intent["latest_charge"] = charge_id
        intent["next_action"] = None
        if failed:
            intent["status"] = "requires_payment_method"
            error = {
                "type": "card_error",
                "code": card.code,
                "decline_code": card.decline_code,
                "message": card.message,
                "charge": charge_id,
                "doc_url": f"https://stripe.com/docs/error-codes/{card.code}",
                "payment_method": {
                    "id": intent["payment_method"],
                    "object": "payment_method",
                    "type": "card",
                },
            }
            intent["last_payment_error"] = dict(error)
            raise StripeError(402, {**error, "payment_intent": dict(intent)})
        if manual:
            intent["status"] = "requires_capture"
            intent["amount_capturable"] = intent["amount"]
        else:
            intent["status"] = "succeeded"
            intent["amount_received"] = intent["amount"]

    def _capture(self, acct: _Account, intent: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        if intent["status"] != "requires_capture":
            raise _invalid(
                f"This PaymentIntent could not be captured because it has a status of {intent['status']}. "
                "Only a PaymentIntent with one of the following statuses may be captured: requires_capture.",
                code="payment_intent_unexpected_state",
            )
        amount = int(params.get("amount_to_capture") or intent["amount_capturable"])
        if amount > intent["amount_capturable"]:
            raise _invalid(
                "The amount to capture is larger than the authorised amount.", code="amount_too_large"
            )
        charge = acct.charges[intent["latest_charge"]]
        charge.update(captured=True, amount_captured=amount, amount_refunded=intent["amount"] - amount)
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        return self._expand(acct, intent, params)

    def _cancel(self, acct: _Account, intent: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        if intent["status"] in ("succeeded", "canceled"):
            raise _invalid(
                f"You cannot cancel this PaymentIntent because it has a status of {intent['status']}.",
                code="payment_intent_unexpected_state",
            )
        intent.update(
            status="canceled",
            canceled_at=int(time.time()),
            cancellation_reason=params.get("cancellation_reason") or "requested_by_customer",
            amount_capturable=0,
            next_action=None,
        )
        acct.cards.pop(intent["id"], None)
        return self._expand(acct, intent, params)

    # --- Refunds ---

    def _list_refunds(self, acct: _Account, params: dict[str, Any]) -> dict[str, Any]:
        """``GET /v1/refunds``: newest first, filtered by ``payment_intent`` or ``charge``,
        paged with ``limit`` (default 10, at most 100) and ``starting_after``."""
        found = list(reversed(acct.refunds.values()))  # kept in creation order
        for name in ("payment_intent", "charge"):
            if params.get(name):
                found = [r for r in found if r.get(name) == params[name]]
        after = params.get("starting_after")
        if after:
            ids = [r["id"] for r in found]
            if after not in ids:
                raise _invalid(f"No such refund: '{after}'", code="resource_missing", status=404)
            found = found[ids.index(after) + 1 :]
        limit = max(1, min(100, int(params.get("limit") or 10)))
        return {"object": "list", "url": "/v1/refunds", "has_more": len(found) > limit, "data": found[:limit]}

    def _refund(self, acct: _Account, params: dict[str, Any]) -> dict[str, Any]:
        intent_id = params.get("payment_intent")
        if intent_id:
            intent = acct.intents.get(intent_id)
            if intent is None:
                raise _invalid(f"No such payment_intent: '{intent_id}'", code="resource_missing", status=404)
            charge = acct.charges.get(intent.get("latest_charge") or "")
        else:
            charge = acct.charges.get(params.get("charge") or "")
            intent = acct.intents.get(charge["payment_intent"]) if charge else None
        if charge is None or charge["status"] != "succeeded" or not charge["captured"]:
            raise _invalid(
                "This PaymentIntent does not have a successful charge to refund.",
                code="charge_not_refundable",
            )
        remaining = charge["amount_captured"] - charge["amount_refunded"]
        if remaining <= 0:
            raise _invalid(
                f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded"
            )
        amount = int(params.get("amount") or remaining)
        if amount > remaining:
            raise _invalid(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                code="amount_too_large",
                param="amount",
            )
        card = TEST_CARDS.get(charge.get("payment_method") or "")
        status = "pending" if card is not None and card.refund == "pending" else "succeeded"
        refund = {
            "id": new_id("re"),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "created": int(time.time()),
            "currency": charge["currency"],
            "failure_reason": None,
            "metadata": params.get("metadata") or {},
            "payment_intent": charge["payment_intent"],
            "reason": params.get("reason"),
            "status": status,
        }
        acct.refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
        return refund


def main() -> None:  # pragma: no cover - manual use
    parser = argparse.ArgumentParser(description="Run the fake Stripe API in the foreground.")
    parser.add_argument("--port", type=int, default=12111)
    args = parser.parse_args()
    fake = StripeFake(port=args.port).start()
    print(f"fake Stripe API on {fake.url} (any sk_test_ key); Ctrl-C stops it")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
