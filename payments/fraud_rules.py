"""The merchant's fraud rules: what they check, how they are written, and what happens when one fires.

Kinds (``FraudRule.Kind``) and when each can fire:

==================  ============================================================  ======================
kind                fires when                                                    known
==================  ============================================================  ======================
max_amount          the amount is over the limit (in the rule's currency)         before the card
velocity            more than N payment attempts (count) or more than an amount   email, IP: before;
                    authorised (sum) from one customer email, IP or card in a     card: gateway result
                    window
block_email         the customer's email is on the list (compared by blind        before the card
                    index: the list keeps digests and a masked hint only)
block_ip            the customer's IP is in one of the CIDR ranges                before the card
country_mismatch    the IP's country (trusted proxy header) differs from the      gateway result
                    card's issuing country
block_card          the card's fingerprint is on the list                         gateway result
block_bin           the card's BIN (first 6 or 8 digits) is on the list           gateway result
risk_level          the gateway's risk level (Radar, Braintree) is at or above    gateway result
                    the rule's level (elevated or highest)
==================  ============================================================  ======================

Outcome: ``block`` wins over ``review``, which wins over ``allow``.

* Before the card (:func:`evaluate_before`): ``review`` takes the payment with manual
  capture (it waits in the review queue once authorised); ``block`` fails it before the
  gateway is called.
* On the gateway's result (:func:`evaluate_after`): a ``block`` on a payment that is only
  authorised cancels it at the gateway (a Celery task after commit); on a payment that
  already succeeded it flags it for review (refund or keep). A ``review`` queues an
  authorised payment and flags a succeeded one.

Velocity windows end when the payment was created, so evaluating again later gives
the same answer; the counts use the indexes ``pay_merchant_customer``,
``pay_merchant_ip_created`` and ``pay_merchant_card_created``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache, partial
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import QuerySet, Sum
from django.utils import timezone

from accounts import merchant_roles
from accounts.models import Merchant, User
from accounts.selectors import member_can
from payments import batch_memo, countries, money
from payments.fraud import ALLOW, Decision
from payments.models import FraudRule, Payment, PaymentEvent
from security import audit
from security.blind_index import blind_index
from security.errors import ApplicationError, PermissionDeniedError
from security.masking import mask_email

log = logging.getLogger("fintech_portal.payments")

K = FraudRule.Kind
A = FraudRule.Action
S = Payment.Status

MAX_ENTRIES = 1000
MAX_WINDOW_MINUTES = 30 * 24 * 60
MAX_VELOCITY_COUNT = 100_000
RISK_RANK = {"normal": 0, "elevated": 1, "highest": 2}
RISK_LEVELS = ("elevated", "highest")
VELOCITY_DIMENSIONS = {"email": "customer email", "ip": "IP address", "card": "card"}
VELOCITY_MEASURES = ("count", "sum")
# The narrowest prefix a block-list may name: wider ranges would block whole regions of the internet.
MIN_PREFIX = {4: 8, 6: 32}
BEFORE_KINDS = frozenset({K.MAX_AMOUNT, K.VELOCITY, K.BLOCK_EMAIL, K.BLOCK_IP})
AFTER_KINDS = frozenset({K.VELOCITY, K.COUNTRY_MISMATCH, K.BLOCK_CARD, K.BLOCK_BIN, K.RISK_LEVEL})
# Statuses at which the gateway's result is final enough to judge the card.
JUDGED = frozenset({S.REQUIRES_CAPTURE, S.SUCCEEDED})
# What a velocity total adds up: payments authorised or captured.
SPENT = (S.PROCESSING, S.REQUIRES_CAPTURE, S.SUCCEEDED)

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FINGERPRINT = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_BIN = re.compile(r"^(\d{6}|\d{8})$")


class RuleInvalid(ApplicationError):
    """A rule's settings are wrong; ``field`` names the form field to show the message on."""

    status_code = 400
    code = "invalid_rule"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# --- Validation ---------------------------------------------------------------------------------


def _only(params: dict[str, Any], allowed: Iterable[str]) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise RuleInvalid(f"Unknown setting(s) for this kind of rule: {', '.join(unknown)}.")


def _int(value: Any, *, field: str, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RuleInvalid(f"{name} must be a whole number.", field=field)
    if not low <= value <= high:
        raise RuleInvalid(f"{name} must be between {low:,} and {high:,}.", field=field)
    return value


def _currency(value: Any) -> str:
    try:
        return money.normalize_currency(value)
    except ApplicationError as exc:
        raise RuleInvalid(exc.message, field="currency") from exc


def _entries(params: dict[str, Any]) -> list[Any]:
    entries = params.get("entries")
    if not isinstance(entries, list) or not entries:
        raise RuleInvalid("Add at least one entry to the list.", field="entries")
    if len(entries) > MAX_ENTRIES:
        raise RuleInvalid(f"A list holds at most {MAX_ENTRIES:,} entries.", field="entries")
    return entries


def _dedupe(values: Iterable[Any], key: Any = None) -> list[Any]:
    seen: set[Any] = set()
    out = []
    for value in values:
        k = key(value) if key else value
        if k not in seen:
            seen.add(k)
            out.append(value)
    return out


def _email_entry(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        digest, hint = value.get("bidx"), value.get("hint", "")
        if not isinstance(digest, str) or not _HEX64.match(digest) or not isinstance(hint, str):
            raise RuleInvalid("An entry of the email list is damaged; remove it and add the email again.")
        return {"bidx": digest, "hint": hint[:80]}
    text = str(value or "").strip()
    try:
        validate_email(text)
    except ValidationError as exc:
        raise RuleInvalid(f"“{text[:80]}” is not a valid email address.", field="entries") from exc
    return {"bidx": str(blind_index("email", text)), "hint": mask_email(text)}


def _ip_entry(value: Any) -> str:
    text = str(value or "").strip()
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise RuleInvalid(
            f"“{text[:60]}” is not an IP address or CIDR range (like 203.0.113.0/24).", field="entries"
        ) from exc
    narrowest = MIN_PREFIX[network.version]
    if network.prefixlen < narrowest:
        raise RuleInvalid(
            f"{network} is too wide to block: use a /{narrowest} or narrower range.", field="entries"
        )
    return str(network)


def _card_entry(value: Any) -> str:
    text = str(value or "").strip()
    if not _FINGERPRINT.match(text):
        raise RuleInvalid(
            f"“{text[:70]}” is not a card fingerprint (8 to 64 letters, digits, - or _, "
            "as shown on a payment's page).",
            field="entries",
        )
    return text


def _bin_entry(value: Any) -> str:
    text = str(value or "").strip().replace(" ", "")
    if not _BIN.match(text):
        raise RuleInvalid(f"“{text[:20]}” is not a BIN: give the first 6 or 8 digits.", field="entries")
    return text


def validate_parameters(kind: str, parameters: Any) -> dict[str, Any]:
    """The rule's parameters checked and normalised, or :class:`RuleInvalid` with a clear message.

    Block-lists take plain values (emails, ranges, fingerprints, BINs) one per entry;
    email entries are stored as blind-index digests with a masked hint, never in clear.
    """
    if kind not in K.values:
        raise RuleInvalid("Choose a kind of rule.", field="kind")
    if not isinstance(parameters, dict):
        raise RuleInvalid("The rule's settings must be an object.")
    p = parameters
    if kind == K.MAX_AMOUNT:
        _only(p, ("currency", "amount"))
        return {
            "currency": _currency(p.get("currency")),
            "amount": _int(
                p.get("amount"), field="amount", name="The limit", low=1, high=money.MAX_MINOR_AMOUNT
            ),
        }
    if kind == K.VELOCITY:
        _only(p, ("dimension", "measure", "limit", "currency", "window_minutes"))
        dimension, measure = p.get("dimension"), p.get("measure")
        if dimension not in VELOCITY_DIMENSIONS:
            raise RuleInvalid("Count per customer email, IP address or card.", field="dimension")
        if measure not in VELOCITY_MEASURES:
            raise RuleInvalid("Count payments, or add up their amounts.", field="measure")
        out: dict[str, Any] = {
            "dimension": dimension,
            "measure": measure,
            "window_minutes": _int(
                p.get("window_minutes"),
                field="window_minutes",
                name="The window",
                low=1,
                high=MAX_WINDOW_MINUTES,
            ),
        }
        if measure == "count":
            if p.get("currency"):
                raise RuleInvalid("A count has no currency.", field="currency")
            out["limit"] = _int(
                p.get("limit"), field="limit", name="The limit", low=1, high=MAX_VELOCITY_COUNT
            )
        else:
            out["currency"] = _currency(p.get("currency"))
            out["limit"] = _int(
                p.get("limit"), field="limit", name="The limit", low=1, high=money.MAX_MINOR_AMOUNT
            )
        return out
    if kind == K.COUNTRY_MISMATCH:
        _only(p, ())
        return {}
    if kind == K.RISK_LEVEL:
        _only(p, ("min_level",))
        if p.get("min_level") not in RISK_LEVELS:
            raise RuleInvalid("Choose elevated or highest.", field="min_level")
        return {"min_level": p["min_level"]}
    _only(p, ("entries",))
    entries = _entries(p)
    if kind == K.BLOCK_EMAIL:
        return {"entries": _dedupe((_email_entry(e) for e in entries), key=lambda e: e["bidx"])}
    if kind == K.BLOCK_IP:
        return {"entries": _dedupe(_ip_entry(e) for e in entries)}
    if kind == K.BLOCK_CARD:
        return {"entries": _dedupe(_card_entry(e) for e in entries)}
    return {"entries": _dedupe(_bin_entry(e) for e in entries)}


def _window_words(minutes: int) -> str:
    if minutes % (24 * 60) == 0:
        days = minutes // (24 * 60)
        return f"{days} day{'s' if days != 1 else ''}"
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def describe(kind: str, parameters: dict[str, Any]) -> str:
    """One line for people (and the audit log: block-lists give a count, never their entries)."""
    p = parameters
    if kind == K.MAX_AMOUNT:
        return f"Amount over {money.format_minor(p['amount'], p['currency'])}"
    if kind == K.VELOCITY:
        per = VELOCITY_DIMENSIONS[p["dimension"]]
        window = _window_words(p["window_minutes"])
        if p["measure"] == "count":
            return f"More than {p['limit']:,} payment{'s' if p['limit'] != 1 else ''} per {per} in {window}"
        return f"More than {money.format_minor(p['limit'], p['currency'])} per {per} in {window}"
    if kind == K.COUNTRY_MISMATCH:
        return "The IP address's country differs from the card's country"
    if kind == K.RISK_LEVEL:
        return "Risk level highest" if p["min_level"] == "highest" else "Risk level elevated or highest"
    count = len(p.get("entries", []))
    nouns: dict[str, str] = {
        K.BLOCK_EMAIL: "email",
        K.BLOCK_IP: "IP range",
        K.BLOCK_CARD: "card",
        K.BLOCK_BIN: "BIN",
    }
    noun = nouns[kind]
    return f"{count:,} {noun}{'s' if count != 1 else ''} on the list"


# --- Rule changes (audited, one transaction each) ------------------------------------------------


def _label(label: str) -> str:
    label = (label or "").strip()
    if not label:
        raise RuleInvalid("Give the rule a name your team will recognise.", field="label")
    if len(label) > 120:
        raise RuleInvalid("Keep the name under 120 characters.", field="label")
    return label


def _action(action: str) -> str:
    if action not in A.values:
        raise RuleInvalid("Choose what happens when the rule fires: review or block.", field="action")
    return action


def _audit_details(rule: FraudRule, **extra: Any) -> dict[str, Any]:
    return {
        "kind": rule.kind,
        "action": rule.action,
        "label": rule.label,
        "enabled": rule.enabled,
        "summary": describe(rule.kind, rule.parameters),
        **extra,
    }


def _require_editor(actor: User, merchant_id: int) -> None:
    """The actor's current role must let them manage fraud rules (the role table)."""
    if not member_can(actor, merchant_id, merchant_roles.FRAUD_RULES_MANAGE):
        raise PermissionDeniedError("Only owners and admins manage fraud rules.")


def fraud_rule_create(
    *,
    actor: User,
    merchant: Merchant,
    kind: str,
    parameters: Any,
    action: str,
    label: str,
    enabled: bool = True,
) -> FraudRule:
    rule = FraudRule(
        merchant=merchant,
        kind=kind,
        parameters=validate_parameters(kind, parameters),
        action=_action(action),
        label=_label(label),
        enabled=bool(enabled),
        created_by=actor,
    )
    with transaction.atomic():
        _require_editor(actor, merchant.pk)
        rule.save(force_insert=True)
        audit.record(
            actor=actor,
            action="fraud_rule.created",
            target=rule,
            merchant=merchant,
            details=_audit_details(rule),
        )
    return rule


def fraud_rule_update(
    *, actor: User, rule: FraudRule, parameters: Any, action: str, label: str, enabled: bool
) -> FraudRule:
    """Change a rule's settings (its kind stays: make a new rule for another kind)."""
    values = {
        "parameters": validate_parameters(rule.kind, parameters),
        "action": _action(action),
        "label": _label(label),
        "enabled": bool(enabled),
    }
    with transaction.atomic():
        locked = FraudRule.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=rule.pk)
        _require_editor(actor, locked.merchant_id)
        changed = [name for name, value in values.items() if getattr(locked, name) != value]
        if not changed:
            return locked
        before = describe(locked.kind, locked.parameters)
        for name in changed:
            setattr(locked, name, values[name])
        locked.save(update_fields=[*changed, "updated_at"])
        audit.record(
            actor=actor,
            action="fraud_rule.updated",
            target=locked,
            merchant=locked.merchant,
            details=_audit_details(locked, changed=changed, summary_before=before),
        )
    return locked


def fraud_rule_set_enabled(*, actor: User, rule: FraudRule, enabled: bool) -> FraudRule:
    with transaction.atomic():
        locked = FraudRule.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=rule.pk)
        _require_editor(actor, locked.merchant_id)
        if locked.enabled == enabled:
            return locked
        locked.enabled = enabled
        locked.save(update_fields=["enabled", "updated_at"])
        audit.record(
            actor=actor,
            action="fraud_rule.enabled" if enabled else "fraud_rule.disabled",
            target=locked,
            merchant=locked.merchant,
            details=_audit_details(locked),
        )
    return locked


def fraud_rule_delete(*, actor: User, rule: FraudRule) -> None:
    """Delete a rule. Payments it fired on keep their record of it (id, label, detail)."""
    with transaction.atomic():
        locked = (
            FraudRule.objects.select_for_update(of=("self",))
            .select_related("merchant")
            .filter(pk=rule.pk)
            .first()
        )
        if locked is None:
            return
        _require_editor(actor, locked.merchant_id)
        audit.record(
            actor=actor,
            action="fraud_rule.deleted",
            target=locked,
            merchant=locked.merchant,
            details=_audit_details(locked),
        )
        locked.delete()


# --- Evaluation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What is known about a payment when the rules look at it."""

    merchant_id: int
    amount: int
    currency: str
    at: datetime  # when the payment was created: velocity windows end here
    payment_pk: int | None = None
    customer_pk: int | None = None
    customer_bidx: str | None = None
    ip: str | None = None
    ip_country: str = ""
    card_fingerprint: str = ""
    card_bin: str = ""
    card_country: str = ""
    risk_level: str = ""


def _fired(rule: FraudRule, detail: str, stage: str) -> dict[str, Any]:
    return {
        "rule_id": rule.public_id,
        "kind": rule.kind,
        "label": rule.label,
        "action": rule.action,
        "detail": detail[:300],
        "stage": stage,
    }


def velocity_queryset(parameters: dict[str, Any], facts: Facts) -> QuerySet[Payment] | None:
    """The other payments a velocity rule counts (``None`` when the payment lacks the dimension).

    Answered from an index: ``pay_merchant_customer``, ``pay_merchant_ip_created`` or
    ``pay_merchant_card_created`` (equality on merchant and dimension, a range on created_at).
    """
    dimension = parameters["dimension"]
    qs = Payment.objects.filter(merchant_id=facts.merchant_id)
    if dimension == "email":
        if facts.customer_pk is None:
            return None
        qs = qs.filter(customer_id=facts.customer_pk)
    elif dimension == "ip":
        if not facts.ip:
            return None
        qs = qs.filter(customer_ip=facts.ip)
    else:
        if not facts.card_fingerprint:
            return None
        qs = qs.filter(card_fingerprint=facts.card_fingerprint)
    window = timedelta(minutes=parameters["window_minutes"])
    qs = qs.filter(created_at__gt=facts.at - window, created_at__lte=facts.at)
    if facts.payment_pk is not None:
        qs = qs.exclude(pk=facts.payment_pk)
    return qs


def _velocity(rule: FraudRule, facts: Facts) -> str | None:
    p = rule.parameters
    dimension = p["dimension"]
    qs = velocity_queryset(p, facts)
    if qs is None:
        return None
    per = VELOCITY_DIMENSIONS[dimension]
    words = _window_words(p["window_minutes"])
    if p["measure"] == "count":
        # Attempts: payments a card was tried on, whatever the outcome (card testing is mostly
        # declines). Counting stops at the limit: a burst costs no more than the rule needs.
        total = qs.filter(attempts__gt=0).order_by().values("pk")[: p["limit"]].count() + 1
        if total > p["limit"]:
            return f"{total} payments from this {per} in {words} (limit {p['limit']})"
        return None
    if p["currency"] != facts.currency:
        return None
    # Money authorised or taken (a checkout merely opened, declined or canceled adds nothing).
    spent = (
        qs.filter(currency=facts.currency, status__in=SPENT).aggregate(total=Sum("amount"))["total"] or 0
    ) + facts.amount
    if spent > p["limit"]:
        return (
            f"{money.format_minor(spent, facts.currency)} from this {per} in {words} "
            f"(limit {money.format_minor(p['limit'], facts.currency)})"
        )
    return None


@lru_cache(maxsize=256)
def _networks(ranges: tuple[str, ...]) -> tuple[tuple[int, int, int, str], ...]:
    """Parsed once per list: (version, first address, last address, text) for each range."""
    parsed = []
    for text in ranges:
        network = ipaddress.ip_network(text)
        parsed.append((network.version, int(network.network_address), int(network.broadcast_address), text))
    return tuple(parsed)


def _in_ranges(ip: str, ranges: list[str]) -> str | None:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    value = int(address)
    for version, first, last, text in _networks(tuple(ranges)):
        if version == address.version and first <= value <= last:
            return text
    return None


def _check(rule: FraudRule, facts: Facts, stage: str) -> str | None:
    """Why ``rule`` fires on ``facts`` at ``stage``, or ``None``."""
    p = rule.parameters
    kind = rule.kind
    if stage == "before":
        if kind == K.MAX_AMOUNT:
            if facts.currency == p["currency"] and facts.amount > p["amount"]:
                return (
                    f"{money.format_minor(facts.amount, facts.currency)} is over the "
                    f"{money.format_minor(p['amount'], p['currency'])} limit"
                )
            return None
        if kind == K.VELOCITY and p["dimension"] in ("email", "ip"):
            return _velocity(rule, facts)
        if kind == K.BLOCK_EMAIL:
            if facts.customer_bidx and any(e["bidx"] == facts.customer_bidx for e in p["entries"]):
                return "The customer's email is on the block-list"
            return None
        if kind == K.BLOCK_IP:
            hit = _in_ranges(facts.ip, p["entries"]) if facts.ip else None
            return f"The customer's IP address is in {hit}" if hit else None
        return None
    if kind == K.VELOCITY and p["dimension"] == "card":
        return _velocity(rule, facts)
    if kind == K.COUNTRY_MISMATCH:
        card = countries.to_alpha2(facts.card_country)
        if facts.ip_country and card and facts.ip_country != card:
            where = "a Tor exit node" if facts.ip_country == "T1" else facts.ip_country
            return f"The IP address is in {where}; the card was issued in {card}"
        return None
    if kind == K.BLOCK_CARD:
        if facts.card_fingerprint and facts.card_fingerprint in p["entries"]:
            return "The card is on the block-list"
        return None
    if kind == K.BLOCK_BIN:
        # A 6-digit entry matches 6- and 8-digit BINs; an 8-digit entry only an 8-digit BIN.
        if facts.card_bin and any(facts.card_bin.startswith(b) for b in p["entries"]):
            return f"The card's BIN {facts.card_bin} is on the block-list"
        return None
    if kind == K.RISK_LEVEL:
        level = (facts.risk_level or "").lower()
        if RISK_RANK.get(level, -1) >= RISK_RANK[p["min_level"]]:
            return f"The gateway rated the payment's risk {level}"
        return None
    return None


def _outcome(actions: Iterable[str], start: str = "allow") -> str:
    rank = {"": 0, "allow": 0, "review": 1, "block": 2}
    best = start or "allow"
    for action in actions:
        if rank[action] > rank[best]:
            best = action
    return best


def _enabled_rules(merchant_id: int, kinds: frozenset[str]) -> list[FraudRule]:
    return batch_memo.remember(
        ("fraud_rules_enabled", merchant_id, kinds),
        lambda: list(
            FraudRule.objects.filter(merchant_id=merchant_id, enabled=True, kind__in=kinds).order_by("id")
        ),
    )


def evaluate_before(
    *,
    merchant: Merchant,
    amount: int,
    currency: str,
    customer: Any,
    ip: str | None,
    ip_country: str = "",
) -> Decision:
    """The rules that can judge a payment before the card is known."""
    rules = _enabled_rules(merchant.pk, BEFORE_KINDS)
    if not rules:
        return ALLOW
    facts = Facts(
        merchant_id=merchant.pk,
        amount=amount,
        currency=currency,
        at=timezone.now(),
        customer_pk=getattr(customer, "pk", None),
        customer_bidx=getattr(customer, "email_bidx", None) or None,
        ip=ip,
        ip_country=ip_country,
    )
    fired = []
    for rule in rules:
        detail = _check(rule, facts, "before")
        if detail:
            fired.append(_fired(rule, detail, "before"))
    if not fired:
        return ALLOW
    return Decision(_outcome(f["action"] for f in fired), fired)


def summary(fired: list[dict[str, Any]]) -> str:
    return "; ".join(f"{f['label']} ({f['action']}): {f['detail']}" for f in fired)[:300]


def _history(payment: Payment, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
    PaymentEvent.objects.create(
        payment=payment,
        merchant_id=payment.merchant_id,
        kind=kind,
        message=message[:300],
        source="fraud_rules",
        data=data or {},
    )


def _flag_for_review(payment: Payment, message: str, *, data: dict[str, Any] | None = None) -> list[str]:
    """Put a payment in the review queue (no-op when it is already there)."""
    if payment.review_status == Payment.Review.PENDING:
        return []
    payment.review_status = Payment.Review.PENDING
    _history(payment, PaymentEvent.Kind.REVIEW, message, data)
    return ["review_status"]


def evaluate_after(*, payment: Payment) -> None:
    """Called with the payment locked, in the transaction that applied a gateway result.

    Idempotent: a rule that already fired on this payment does not act again.
    """
    fields: list[str] = []
    if payment.status in (S.CANCELED, S.FAILED) and payment.review_status == Payment.Review.PENDING:
        payment.review_status = Payment.Review.NONE
        _history(
            payment,
            PaymentEvent.Kind.REVIEW,
            f"Left the review queue: the payment was {payment.get_status_display().lower()}.",
        )
        payment.save(update_fields=["review_status", "updated_at"])
        return
    if payment.status not in JUDGED:
        return
    rules = _enabled_rules(payment.merchant_id, AFTER_KINDS)
    already = {f.get("rule_id") for f in payment.fraud_rules_fired or []}
    facts = Facts(
        merchant_id=payment.merchant_id,
        amount=payment.amount,
        currency=payment.currency,
        at=payment.created_at,
        payment_pk=payment.pk,
        ip_country=payment.ip_country,
        card_fingerprint=payment.card_fingerprint,
        card_bin=payment.card_bin,
        card_country=payment.card_country,
        risk_level=payment.risk_level,
    )
    new = []
    for rule in rules:
        if rule.public_id in already:
            continue
        detail = _check(rule, facts, "after")
        if detail:
            new.append(_fired(rule, detail, "after"))
    if new:
        payment.fraud_rules_fired = [*(payment.fraud_rules_fired or []), *new]
        payment.fraud_outcome = _outcome((f["action"] for f in new), start=payment.fraud_outcome)
        fields += ["fraud_rules_fired", "fraud_outcome"]
        blocked = any(f["action"] == A.BLOCK for f in new)
        ids = [f["rule_id"] for f in new]
        if payment.status == S.REQUIRES_CAPTURE and blocked:
            _history(
                payment,
                PaymentEvent.Kind.FRAUD,
                f"Blocked on the gateway's result, the authorisation is being canceled: {summary(new)}",
                {"rules": ids},
            )
            transaction.on_commit(partial(enqueue_cancel, payment.pk))
        elif payment.status == S.SUCCEEDED:
            verdict = "blocked" if blocked else "held for review"
            _history(
                payment,
                PaymentEvent.Kind.FRAUD,
                f"Would have been {verdict}, but the payment had already succeeded: {summary(new)}",
                {"rules": ids},
            )
            fields += _flag_for_review(
                payment, "Flagged for review: keep the payment or refund it.", data={"rules": ids}
            )
        else:
            _history(payment, PaymentEvent.Kind.FRAUD, f"Held for review: {summary(new)}", {"rules": ids})
        audit.record(
            actor=None,
            action="payment.fraud_rules_fired",
            target=payment,
            merchant=payment.merchant_id and payment.merchant,
            details={"rules": ids, "outcome": payment.fraud_outcome, "status": payment.status},
        )
    if (
        payment.status == S.REQUIRES_CAPTURE
        and payment.fraud_outcome == Payment.FraudOutcome.REVIEW
        and payment.review_status == Payment.Review.NONE
    ):
        payment.review_status = Payment.Review.PENDING
        _history(
            payment, PaymentEvent.Kind.REVIEW, "Authorised and waiting for review: capture or cancel it."
        )
        fields.append("review_status")
    if fields:
        payment.save(update_fields=sorted({*fields, "updated_at"}))


def enqueue_cancel(payment_pk: int) -> None:
    """After commit: cancel a blocked, authorised payment at the gateway (a Celery task)."""
    from payments import tasks

    tasks.cancel_blocked_payment.delay(payment_pk)


def payment_cancel_blocked(*, payment_pk: int, final_attempt: bool = False) -> str:
    """Cancel an authorised payment our rules blocked. Idempotent; returns the payment's status.

    Raises a retryable ``GatewayError`` while the gateway is unreachable (the task retries);
    when the gateway refuses, or on the final attempt, a person is asked to decide instead.
    """
    from payments import services
    from payments.gateways import registry
    from payments.gateways.base import GatewayError

    payment = Payment.objects.select_related("merchant").filter(pk=payment_pk).first()
    if payment is None:
        return "missing"
    if payment.status != S.REQUIRES_CAPTURE:
        if payment.status == S.SUCCEEDED:
            _needs_person(payment, "The blocked payment was captured before it could be canceled.")
        return payment.status
    gateway = registry.gateway_for(payment.gateway)
    try:
        result = gateway.cancel_payment(services.payment_ref_for(payment))
    except GatewayError as exc:
        if exc.retryable and not final_attempt:
            raise
        log.warning("fraud: could not cancel %s: %s", payment.public_id, exc.code)
        # The gateway may know better (captured meanwhile, already canceled): take its word.
        with contextlib.suppress(GatewayError):
            services.payment_refetch(payment=payment, source="fraud_rules")
        _needs_person(payment, f"Could not cancel the blocked payment automatically: {exc.user_message}")
        payment.refresh_from_db(fields=["status"])
        return payment.status
    services.payment_apply_gateway_state(payment=payment, result=result, source="fraud_rules")
    payment.refresh_from_db(fields=["status"])
    return payment.status


def _needs_person(payment: Payment, message: str) -> None:
    with transaction.atomic():
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        if locked.status not in JUDGED:
            return
        if _flag_for_review(locked, message):
            locked.save(update_fields=["review_status", "updated_at"])
