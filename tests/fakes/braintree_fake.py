"""A fake of the Braintree gateway API our adapter uses, at the HTTP level.

Braintree's server SDK speaks XML over HTTP(S) to ``/merchants/{merchant_id}/...``
with HTTP Basic auth (public key : private key) and ``X-ApiVersion: 6``. Point
the real SDK here with a custom ``braintree.Environment`` (host 127.0.0.1, the
fake's port, plain HTTP) and it runs unchanged.

Endpoints: ``POST client_token``; ``POST transactions`` (sale); ``POST transactions/advanced_search_ids``
and ``.../advanced_search`` (search by ``order_id``);
``PUT transactions/{id}/submit_for_settlement``; ``PUT transactions/{id}/void``;
``POST transactions/{id}/refund``; ``GET transactions/{id}``; and the sandbox's
testing endpoints ``PUT transactions/{id}/settle`` and ``.../settlement_decline``
(what ``gateway.testing.settle_transaction`` calls).

Behaviour follows Braintree's sandbox: test nonces (``fake-valid-nonce``,
``fake-processor-declined-visa-nonce``, ``fake-gateway-rejected-fraud-nonce``,
the 3D Secure nonces) and test amounts (2000.00-2999.99 decline with that
processor response code, 3000.00-3000.99 fail with 3000). ``api_request_key``
gives at-most-once processing: the same key returns the same transaction.
Refunds of unsettled sales fail with 91506, as Braintree's do. :meth:`BraintreeFake.fail_next`
answers the next requests with an HTTP error (429 rate limit, 5xx outage);
:meth:`~tests.fakes._server.FakeServer.drop_answers` does the work of the next matching
requests and loses their answers (a timeout after the refund was made).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import string
import time
import xml.etree.ElementTree as ET  # noqa: S405 - parses XML our own SDK just generated
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from tests.fakes._server import FakeServer, RecordedRequest, Response

_ID_ALPHABET = string.ascii_lowercase + string.digits


def _txn_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


# --- XML, the way Braintree writes it ------------------------------------------------------------


def _tag(key: str) -> str:
    return key.replace("_", "-")


def to_xml(root: str, value: dict[str, Any]) -> bytes:
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n', _node(root, value)]
    return "".join(parts).encode()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _node(key: str, value: Any) -> str:
    tag = _tag(key)
    if value is None:
        return f'<{tag} nil="true"/>'
    if isinstance(value, bool):
        return f'<{tag} type="boolean">{str(value).lower()}</{tag}>'
    if isinstance(value, int):
        return f'<{tag} type="integer">{value}</{tag}>'
    if isinstance(value, datetime):
        return f'<{tag} type="datetime">{value.strftime("%Y-%m-%dT%H:%M:%SZ")}</{tag}>'
    if isinstance(value, list):
        items = "".join(_node("item", item) for item in value)
        return f'<{tag} type="array">{items}</{tag}>'
    if isinstance(value, dict):
        return f"<{tag}>" + "".join(_node(k, v) for k, v in value.items()) + f"</{tag}>"
    return f"<{tag}>{_escape(str(value))}</{tag}>"


def from_xml(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    root = ET.fromstring(body)  # noqa: S314 - trusted: produced by the Braintree SDK in this process
    return {root.tag.replace("-", "_"): _parse(root)}


def _parse(element: ET.Element) -> Any:
    kind = element.get("type")
    if element.get("nil") == "true":
        return None
    children = list(element)
    if kind == "array":
        return [_parse(child) for child in children]
    if children:
        return {child.tag.replace("-", "_"): _parse(child) for child in children}
    text = element.text or ""
    if kind == "boolean":
        return text.strip() in ("true", "1")
    if kind == "integer":
        return int(text)
    return text


# --- Test values ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeNonce:
    card_type: str = "Visa"
    bin: str = "411111"
    last_4: str = "1111"
    country: str = "USA"
    processor_declined: bool = False
    rejection: str | None = None  # gateway rejection reason
    three_d_secure: dict[str, Any] | None = None
    invalid: tuple[str, str] | None = None  # validation error (code, message)


_TDS_OK = {
    "status": "authenticate_successful",
    "liability_shifted": True,
    "liability_shift_possible": True,
    "enrolled": "Y",
    "three_d_secure_version": "2.2.0",
}
_TDS_FAILED = {
    "status": "authenticate_failed",
    "liability_shifted": False,
    "liability_shift_possible": True,
    "enrolled": "Y",
    "three_d_secure_version": "2.2.0",
}

NONCES: dict[str, FakeNonce] = {
    "fake-valid-nonce": FakeNonce(),
    "fake-valid-visa-nonce": FakeNonce(),
    "fake-valid-mastercard-nonce": FakeNonce("MasterCard", "555555", "4444"),
    "fake-valid-amex-nonce": FakeNonce("American Express", "378282", "0005"),
    "fake-valid-debit-nonce": FakeNonce(),
    "fake-processor-declined-visa-nonce": FakeNonce(bin="400011", last_4="1115", processor_declined=True),
    "fake-gateway-rejected-fraud-nonce": FakeNonce(bin="400011", last_4="1511", rejection="fraud"),
    "fake-luhn-invalid-nonce": FakeNonce(invalid=("81715", "Credit card number is invalid.")),
    "fake-three-d-secure-visa-full-authentication-nonce": FakeNonce(
        bin="400000", last_4="0002", three_d_secure=_TDS_OK
    ),
    "fake-three-d-secure-two-visa-successful-step-up-authentication-nonce": FakeNonce(
        bin="400000", last_4="0002", three_d_secure=_TDS_OK
    ),
    "fake-three-d-secure-visa-failed-authentication-nonce": FakeNonce(
        bin="400000", last_4="0028", three_d_secure=_TDS_FAILED
    ),
}

PROCESSOR_RESPONSES: dict[int, tuple[str, str]] = {
    1000: ("Approved", "approved"),
    2000: ("Do Not Honor", "soft_declined"),
    2001: ("Insufficient Funds", "soft_declined"),
    2002: ("Limit Exceeded", "soft_declined"),
    2004: ("Expired Card", "hard_declined"),
    2005: ("Invalid Credit Card Number", "hard_declined"),
    2010: ("Card Issuer Declined CVV", "hard_declined"),
    2046: ("Declined", "soft_declined"),
    3000: ("Processor Network Unavailable - Try Again", "soft_declined"),
}


@dataclass
class _Failure(Exception):
    errors: list[tuple[str, str, str]]  # (code, attribute, message)
    message: str
    transaction: dict[str, Any] | None = None
    status: int = 422


class BraintreeFake(FakeServer):
    """See the module docstring. Credentials are generated per instance unless given."""

    def __init__(
        self,
        *,
        merchant_id: str = "fake_merchant",
        public_key: str | None = None,
        private_key: str | None = None,
        merchant_accounts: dict[str, str] | None = None,
        default_merchant_account: str = "fake_usd",
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.merchant_id = merchant_id
        self.public_key = public_key or "pub" + secrets.token_hex(4)
        self.private_key = private_key or "priv" + secrets.token_hex(8)
        self.merchant_accounts = merchant_accounts or {"fake_usd": "USD", "fake_eur": "EUR"}
        self.default_merchant_account = default_merchant_account
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.transactions: dict[str, dict[str, Any]] = {}
            self.request_keys: dict[str, str] = {}  # api_request_key -> transaction id
            self.client_tokens: list[dict[str, Any]] = []
            self._failures: list[int] = []
            self._drops.clear()
            self.requests.clear()

    # --- test controls ---

    def settle(self, transaction_id: str) -> dict[str, Any]:
        """What settlement overnight does (also reachable through ``gateway.testing.settle_transaction``)."""
        with self.lock:
            txn = self.transactions[transaction_id]
            self._set_status(txn, "settled")
            return txn

    def transaction(self, transaction_id: str) -> dict[str, Any]:
        return self.transactions[transaction_id]

    def fail_next(self, status: int = 500, count: int = 1) -> None:
        """Answer the next ``count`` API requests with ``status`` and an empty body, as
        Braintree does when it rate-limits (429) or is down (500, 503)."""
        with self.lock:
            self._failures.extend([status] * count)

    # --- HTTP ---

    def handle(self, request: RecordedRequest) -> Response:
        try:
            request.params = from_xml(request.body)
        except ET.ParseError:
            return Response(400, b"", "application/xml")
        with self.lock:
            if self._failures:
                return Response(self._failures.pop(0), b"", "application/xml")
        expected = base64.b64encode(f"{self.public_key}:{self.private_key}".encode()).decode()
        if request.header("authorization") != f"Basic {expected}":
            return Response(401, b"", "application/xml")
        prefix = f"/merchants/{self.merchant_id}/"
        if not request.path.startswith(prefix):
            return Response(404, b"", "application/xml")
        route = request.path[len(prefix) :].strip("/").split("/")
        with self.lock:
            try:
                return self._route(request, route)
            except _Failure as failure:
                return self._failure(failure)

    def _ok(self, root: str, value: dict[str, Any], status: int = 200) -> Response:
        return Response(status, to_xml(root, value), "application/xml; charset=utf-8")

    def _failure(self, failure: _Failure) -> Response:
        grouped: dict[str, Any] = {"errors": []}
        if failure.errors:
            grouped = {
                "errors": [],
                "transaction": {
                    "errors": [{"code": c, "attribute": a, "message": m} for c, a, m in failure.errors],
                },
            }
        body: dict[str, Any] = {"errors": grouped, "message": failure.message, "params": {}}
        if failure.transaction is not None:
            body["transaction"] = failure.transaction
        return Response(failure.status, to_xml("api-error-response", body), "application/xml; charset=utf-8")

    def _route(self, request: RecordedRequest, route: list[str]) -> Response:
        params = request.params or {}
        method = request.method
        if method == "POST" and route == ["client_token"]:
            return self._client_token(params.get("client_token") or {})
        if method == "POST" and route == ["transactions"]:
            return self._sale(params.get("transaction") or {})
        if method == "POST" and route == ["transactions", "advanced_search_ids"]:
            ids = [t["id"] for t in self._search(params.get("search") or {})]
            return self._ok("search_results", {"page_size": 50, "ids": ids})
        if method == "POST" and route == ["transactions", "advanced_search"]:
            found = self._search(params.get("search") or {})
            body = "".join(_node("transaction", t) for t in found)
            xml = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<credit-card-transactions type="collection">{body}'
            )
            return Response(
                200, (xml + "</credit-card-transactions>").encode(), "application/xml; charset=utf-8"
            )
        if len(route) >= 2 and route[0] == "transactions":
            txn = self.transactions.get(route[1])
            if txn is None:
                return Response(404, b"", "application/xml")
            action = route[2] if len(route) > 2 else None
            body = params.get("transaction") or {}
            if method == "GET" and action is None:
                return self._ok("transaction", txn)
            if method == "PUT" and action == "submit_for_settlement":
                return self._submit(txn, body)
            if method == "PUT" and action == "void":
                return self._void(txn, body)
            if method == "POST" and action == "refund":
                return self._refund(txn, body)
            if method == "PUT" and action == "settle":
                self._set_status(txn, "settled")
                return self._ok("transaction", txn)
            if method == "PUT" and action == "settlement_decline":
                self._set_status(txn, "settlement_declined")
                txn["processor_settlement_response_code"] = "4001"
                txn["processor_settlement_response_text"] = "Settlement Declined"
                return self._ok("transaction", txn)
        return Response(404, b"", "application/xml")

    def _search(self, criteria: dict[str, Any]) -> list[dict[str, Any]]:
        """Transaction search by ``order_id`` (``is``) and ``ids`` (a list), oldest first."""
        found = list(self.transactions.values())
        order_id = (
            (criteria.get("order_id") or {}).get("is") if isinstance(criteria.get("order_id"), dict) else None
        )
        if order_id is not None:
            found = [t for t in found if t.get("order_id") == order_id]
        ids = criteria.get("ids")
        if isinstance(ids, list):
            found = [t for t in found if t["id"] in ids]
        return found

    # --- client tokens ---

    def _client_token(self, params: dict[str, Any]) -> Response:
        account = params.get("merchant_account_id")
        if account and account not in self.merchant_accounts:
            raise _Failure(
                [("92807", "merchant_account_id", "Merchant account not found.")],
                "Merchant account not found.",
            )
        self.client_tokens.append(params)
        token = {
            "version": 2,
            "authorizationFingerprint": hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
            "configUrl": f"{self.url}/merchants/{self.merchant_id}/client_api/v1/configuration",
            "merchantAccountId": account or self.default_merchant_account,
            "environment": "sandbox",
        }
        value = base64.b64encode(json.dumps(token).encode()).decode()
        return self._ok("client_token", {"value": value}, status=201)

    # --- transactions ---

    def _now(self) -> datetime:
        return datetime.now(UTC).replace(microsecond=0)

    def _set_status(self, txn: dict[str, Any], status: str) -> None:
        txn["status"] = status
        txn["updated_at"] = self._now()
        txn["status_history"].append({"status": status, "timestamp": self._now(), "amount": txn["amount"]})

    def _replay(self, key: str | None) -> Response | None:
        if key and key in self.request_keys:
            txn = self.transactions[self.request_keys[key]]
            if txn["status"] in ("processor_declined", "gateway_rejected", "failed"):
                return self._failure(_Failure([], txn["processor_response_text"] or "Declined", txn))
            return self._ok("transaction", txn, status=201)
        return None

    def _sale(self, params: dict[str, Any]) -> Response:
        replay = self._replay(params.get("api_request_key"))
        if replay is not None:
            return replay
        try:
            amount = Decimal(str(params.get("amount", "")))
        except InvalidOperation:
            raise _Failure([("81503", "amount", "Amount is required.")], "Amount is required.") from None
        if amount <= 0:
            raise _Failure(
                [("81531", "amount", "Amount must be greater than zero.")],
                "Amount must be greater than zero.",
            )
        account = params.get("merchant_account_id") or self.default_merchant_account
        if account not in self.merchant_accounts:
            raise _Failure(
                [("91513", "merchant_account_id", "Merchant account ID is invalid.")],
                "Merchant account ID is invalid.",
            )
        nonce_value = params.get("payment_method_nonce") or ""
        nonce = NONCES.get(nonce_value)
        if nonce is None:
            raise _Failure(
                [("91565", "payment_method_nonce", "Unknown or expired payment_method_nonce.")],
                "Unknown or expired payment_method_nonce.",
            )
        if nonce.invalid:
            code, message = nonce.invalid
            raise _Failure([(code, "number", message)], message)
        options = params.get("options") or {}
        submit = options.get("submit_for_settlement") in (True, "true")
        tds_required = (options.get("three_d_secure") or {}).get("required") in (True, "true")

        status, response_code, rejection = "authorized", 1000, None
        if nonce.rejection:
            status, rejection = "gateway_rejected", nonce.rejection
        elif tds_required and (nonce.three_d_secure or {}).get("status") != "authenticate_successful":
            status, rejection = "gateway_rejected", "three_d_secure"
        elif nonce.processor_declined:
            status, response_code = "processor_declined", 2000
        elif Decimal("2000") <= amount < Decimal("3000"):
            status, response_code = "processor_declined", int(amount)
        elif Decimal("3000") <= amount < Decimal("3001"):
            status, response_code = "failed", 3000
        elif submit:
            status = "submitted_for_settlement"

        text, kind = PROCESSOR_RESPONSES.get(response_code, ("Processor Declined", "soft_declined"))
        if rejection:
            text, kind, response_code = "", "", 0
        txn_id = _txn_id()
        fraud = rejection in ("fraud", "risk_threshold")
        txn: dict[str, Any] = {
            "id": txn_id,
            "status": "",
            "type": "sale",
            "amount": f"{amount:.2f}",
            "currency_iso_code": self.merchant_accounts[account],
            "merchant_account_id": account,
            "order_id": params.get("order_id"),
            "created_at": self._now(),
            "updated_at": self._now(),
            "processor_response_code": str(response_code) if response_code else None,
            "processor_response_text": text or None,
            "processor_response_type": kind or None,
            "gateway_rejection_reason": rejection,
            "credit_card": {
                "token": None,
                "bin": nonce.bin,
                "last_4": nonce.last_4,
                "card_type": nonce.card_type,
                "expiration_month": "12",
                "expiration_year": "2034",
                "customer_location": "US",
                "country_of_issuance": nonce.country,
                "debit": "No",
                "unique_number_identifier": hashlib.sha256(f"{nonce.bin}{nonce.last_4}".encode()).hexdigest()[
                    :32
                ],
                "expired": False,
            },
            "customer": {"email": (params.get("customer") or {}).get("email")},
            "risk_data": {
                "id": "rd_" + _txn_id(),
                "decision": "Decline" if fraud else "Approve",
                "decision_reasons": ["Fraud rules matched"] if fraud else [],
                "device_data_captured": bool(params.get("device_data")),
                "fraud_service_provider": "fraud_protection",
                "transaction_risk_score": "96" if fraud else "12",
            },
            "three_d_secure_info": nonce.three_d_secure,
            "refund_ids": [],
            "refunded_transaction_id": None,
            "disputes": [],
            "status_history": [],
        }
        self._set_status(txn, status)
        self.transactions[txn_id] = txn
        if params.get("api_request_key"):
            self.request_keys[params["api_request_key"]] = txn_id
        if status in ("processor_declined", "gateway_rejected", "failed"):
            message = text or {
                "fraud": "Gateway Rejected: fraud",
                "three_d_secure": "Gateway Rejected: three_d_secure",
            }.get(rejection or "", "Gateway Rejected")
            raise _Failure([], message, txn)
        return self._ok("transaction", txn, status=201)

    def _submit(self, txn: dict[str, Any], params: dict[str, Any]) -> Response:
        replay = self._replay(params.get("api_request_key"))
        if replay is not None:
            return replay
        if txn["status"] != "authorized":
            raise _Failure(
                [("91507", "base", "Cannot submit for settlement unless status is authorized.")],
                "Cannot submit for settlement unless status is authorized.",
            )
        if params.get("amount"):
            amount = Decimal(str(params["amount"]))
            if amount > Decimal(txn["amount"]):
                raise _Failure(
                    [("91522", "amount", "Settlement amount is too large.")],
                    "Settlement amount is too large.",
                )
            txn["amount"] = f"{amount:.2f}"
        self._set_status(txn, "submitted_for_settlement")
        if params.get("api_request_key"):
            self.request_keys[params["api_request_key"]] = txn["id"]
        return self._ok("transaction", txn)

    def _void(self, txn: dict[str, Any], params: dict[str, Any]) -> Response:
        if params.get("api_request_key") in self.request_keys:
            return self._ok("transaction", self.transactions[self.request_keys[params["api_request_key"]]])
        if txn["status"] not in ("authorized", "submitted_for_settlement", "settlement_pending"):
            message = (
                "Transaction can only be voided if status is authorized, submitted_for_settlement, "
                "or - for PayPal - settlement_pending."
            )
            raise _Failure([("91504", "base", message)], message)
        self._set_status(txn, "voided")
        if params.get("api_request_key"):
            self.request_keys[params["api_request_key"]] = txn["id"]
        return self._ok("transaction", txn)

    def _refund(self, sale: dict[str, Any], params: dict[str, Any]) -> Response:
        replay = self._replay(params.get("api_request_key"))
        if replay is not None:
            return replay
        if sale["type"] != "sale":
            raise _Failure([("91505", "base", "Cannot refund credit")], "Cannot refund credit")
        if sale["status"] == "settling":
            raise _Failure(
                [("91574", "base", "Cannot refund a transaction with a status of settling.")],
                "Cannot refund a transaction with a status of settling.",
            )
        if sale["status"] not in ("settled", "settlement_confirmed"):
            raise _Failure(
                [("91506", "base", "Cannot refund transaction unless it is settled.")],
                "Cannot refund transaction unless it is settled.",
            )
        refunded = sum(Decimal(self.transactions[r]["amount"]) for r in sale["refund_ids"])
        remaining = Decimal(sale["amount"]) - refunded
        if remaining <= 0:
            raise _Failure(
                [("91512", "base", "Transaction has already been completely refunded.")],
                "Transaction has already been completely refunded.",
            )
        amount = Decimal(str(params["amount"])) if params.get("amount") else remaining
        if amount > remaining:
            raise _Failure(
                [("91521", "amount", "Refund amount is too large.")], "Refund amount is too large."
            )
        credit_id = _txn_id()
        credit = {
            **{k: v for k, v in sale.items() if k not in ("refund_ids", "status_history", "disputes")},
            "id": credit_id,
            "type": "credit",
            "status": "",
            "amount": f"{amount:.2f}",
            "order_id": params.get("order_id"),
            "refunded_transaction_id": sale["id"],
            "refund_ids": [],
            "disputes": [],
            "status_history": [],
            "created_at": self._now(),
        }
        self._set_status(credit, "submitted_for_settlement")
        self.transactions[credit_id] = credit
        sale["refund_ids"].append(credit_id)
        if params.get("api_request_key"):
            self.request_keys[params["api_request_key"]] = credit_id
        return self._ok("transaction", credit, status=201)


def main() -> None:  # pragma: no cover - manual use
    parser = argparse.ArgumentParser(description="Run the fake Braintree API in the foreground.")
    parser.add_argument("--port", type=int, default=12112)
    args = parser.parse_args()
    fake = BraintreeFake(port=args.port)
    fake.start()
    print(
        f"fake Braintree API on {fake.url} merchant_id={fake.merchant_id} "
        f"public_key={fake.public_key} private_key={fake.private_key}; Ctrl-C stops it"
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
