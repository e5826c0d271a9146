"""Forms for the merchant's fraud rules: one per kind, each turning its fields into the rule's parameters.

The forms parse what people type (amounts in major units, one list entry per line);
:func:`payments.fraud_rules.validate_parameters` is the one place the parameters are checked.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms

from payments import money
from payments.fraud_rules import MAX_ENTRIES, MAX_WINDOW_MINUTES
from payments.models import FraudRule
from security.errors import ApplicationError

K = FraudRule.Kind

WINDOW_HELP = "For example 60 for an hour, 1440 for a day (at most 30 days)."


class RuleForm(forms.Form):
    kind: ClassVar[str] = ""
    explanation: ClassVar[str] = ""

    label = forms.CharField(label="Name", max_length=120, help_text="What your team will see when it fires.")
    action = forms.ChoiceField(
        label="When it fires",
        choices=FraudRule.Action.choices,
        initial=FraudRule.Action.REVIEW,
        widget=forms.RadioSelect,
        help_text="Review holds the payment (authorised, not captured) until someone decides; "
        "block refuses it.",
    )
    enabled = forms.BooleanField(label="Enabled", required=False, initial=True)

    def __init__(self, *args: Any, rule: FraudRule | None = None, **kwargs: Any) -> None:
        self.rule = rule
        if rule is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "label": rule.label,
                "action": rule.action,
                "enabled": rule.enabled,
                **self.initial_parameters(rule.parameters),
            }
        super().__init__(*args, **kwargs)

    def initial_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        return {}

    def parameters(self) -> dict[str, Any]:
        """The rule's parameters from the cleaned data (only called when the form is valid)."""
        return {}

    @property
    def parameter_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name not in ("label", "action", "enabled")]


def _minor(form: forms.Form, field: str, raw: str, currency: str) -> int | None:
    try:
        amount = money.to_minor(raw.strip(), currency)
    except ApplicationError as exc:
        form.add_error(field, exc.message)
        return None
    if amount <= 0:
        form.add_error(field, "The amount must be more than zero.")
        return None
    return amount


def _currency(form: forms.Form, raw: str) -> str | None:
    try:
        return money.normalize_currency(raw)
    except ApplicationError as exc:
        form.add_error("currency", exc.message)
        return None


class MaxAmountForm(RuleForm):
    kind = K.MAX_AMOUNT
    explanation = (
        "Fires when a payment in this currency is over the amount. Other currencies are not affected."
    )

    currency = forms.CharField(label="Currency", max_length=3, initial="EUR", help_text="ISO code, like EUR.")
    amount = forms.CharField(label="Maximum amount", max_length=24, help_text="For example 500.00.")

    def initial_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        currency = parameters["currency"]
        return {"currency": currency, "amount": str(money.to_decimal(parameters["amount"], currency))}

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        currency = _currency(self, data.get("currency") or "") if data.get("currency") else None
        if currency and data.get("amount"):
            data["currency"] = currency
            data["amount_minor"] = _minor(self, "amount", data["amount"], currency)
        return data

    def parameters(self) -> dict[str, Any]:
        return {"currency": self.cleaned_data["currency"], "amount": self.cleaned_data["amount_minor"]}


class VelocityForm(RuleForm):
    kind = K.VELOCITY
    explanation = (
        "Fires when one customer email, IP address or card makes too many payments, or pays too much, "
        "within the window. Email and IP are checked when checkout opens; the card once the gateway "
        "has seen it."
    )

    dimension = forms.ChoiceField(
        label="Per", choices=[("email", "Customer email"), ("ip", "IP address"), ("card", "Card")]
    )
    measure = forms.ChoiceField(
        label="Measure",
        choices=[("count", "Number of payment attempts"), ("sum", "Total amount authorised")],
        widget=forms.RadioSelect,
        initial="count",
    )
    limit = forms.CharField(
        label="Limit",
        max_length=24,
        help_text="Fires above this: a number of attempts (declined ones count), or an amount for a total "
        "(like 1000.00; only money authorised or taken counts).",
    )
    currency = forms.CharField(
        label="Currency (totals only)",
        max_length=3,
        required=False,
        help_text="Payments in other currencies are not added up.",
    )
    window_minutes = forms.IntegerField(
        label="Window (minutes)", min_value=1, max_value=MAX_WINDOW_MINUTES, initial=60, help_text=WINDOW_HELP
    )

    def initial_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        initial = {
            "dimension": parameters["dimension"],
            "measure": parameters["measure"],
            "window_minutes": parameters["window_minutes"],
            "limit": str(parameters["limit"]),
        }
        if parameters["measure"] == "sum":
            currency = parameters["currency"]
            initial.update(currency=currency, limit=str(money.to_decimal(parameters["limit"], currency)))
        return initial

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        raw = (data.get("limit") or "").strip()
        if not raw:
            return data
        if data.get("measure") == "count":
            if data.get("currency"):
                self.add_error("currency", "A number of payments has no currency: leave it empty.")
            if not raw.isdigit() or int(raw) < 1:
                self.add_error("limit", "Give a whole number of payments, like 5.")
            else:
                data["limit_value"] = int(raw)
        elif data.get("measure") == "sum":
            if not data.get("currency"):
                self.add_error("currency", "Say which currency the total is in.")
                return data
            currency = _currency(self, data["currency"])
            if currency:
                data["currency"] = currency
                data["limit_value"] = _minor(self, "limit", raw, currency)
        return data

    def parameters(self) -> dict[str, Any]:
        d = self.cleaned_data
        params = {
            "dimension": d["dimension"],
            "measure": d["measure"],
            "limit": d["limit_value"],
            "window_minutes": d["window_minutes"],
        }
        if d["measure"] == "sum":
            params["currency"] = d["currency"]
        return params


class CountryMismatchForm(RuleForm):
    kind = K.COUNTRY_MISMATCH
    explanation = (
        "Fires when the country of the customer's IP address (reported by your proxy) differs from the "
        "country that issued the card. Checked once the gateway has seen the card."
    )


class RiskLevelForm(RuleForm):
    kind = K.RISK_LEVEL
    explanation = "Fires when the gateway's own risk assessment (Stripe Radar, Braintree) is at this level."

    min_level = forms.ChoiceField(
        label="Risk level",
        choices=[("elevated", "Elevated or highest"), ("highest", "Highest only")],
        initial="elevated",
    )

    def initial_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        return {"min_level": parameters["min_level"]}

    def parameters(self) -> dict[str, Any]:
        return {"min_level": self.cleaned_data["min_level"]}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").replace(",", "\n").splitlines() if line.strip()]


class BlockListForm(RuleForm):
    entries_label: ClassVar[str] = "Entries"
    entries_help: ClassVar[str] = "One per line."

    entries = forms.CharField(label="Entries", widget=forms.Textarea(attrs={"rows": 6}), required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["entries"].label = self.entries_label
        self.fields["entries"].help_text = f"{self.entries_help} At most {MAX_ENTRIES:,}."

    def initial_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        return {"entries": "\n".join(parameters.get("entries", []))}

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if len(_lines(data.get("entries", ""))) > MAX_ENTRIES:
            self.add_error("entries", f"A list holds at most {MAX_ENTRIES:,} entries.")
        return data

    def parameters(self) -> dict[str, Any]:
        return {"entries": _lines(self.cleaned_data.get("entries", ""))}


class BlockIpForm(BlockListForm):
    kind = K.BLOCK_IP
    explanation = (
        "Fires when the customer's IP address is in one of these ranges. Checked when checkout opens."
    )
    entries_label = "IP addresses and ranges"
    entries_help = "One per line: an address (198.51.100.7) or a CIDR range (203.0.113.0/24, 2001:db8::/48)."


class BlockCardForm(BlockListForm):
    kind = K.BLOCK_CARD
    explanation = (
        "Fires when the card's fingerprint is on the list (the gateway's fingerprint, shown on a "
        "payment's page). Checked once the gateway has seen the card."
    )
    entries_label = "Card fingerprints"
    entries_help = "One per line."


class BlockBinForm(BlockListForm):
    kind = K.BLOCK_BIN
    explanation = (
        "Fires when the card's BIN (its first 6 or 8 digits, identifying the issuer) is on the list. "
        "Checked once the gateway has seen the card; Stripe does not report BINs."
    )
    entries_label = "BINs"
    entries_help = "One per line: 6 digits match every card of that range, 8 digits only 8-digit BINs."


class BlockEmailForm(BlockListForm):
    kind = K.BLOCK_EMAIL
    explanation = (
        "Fires when the customer's email is on the list. Emails are kept only as a keyed digest and a "
        "masked hint, so the list cannot be read back. Checked when checkout opens."
    )
    entries_label = "Add emails"
    entries_help = "One per line; capitals and spaces around them do not matter."

    remove = forms.MultipleChoiceField(
        label="Remove from the list", required=False, widget=forms.CheckboxSelectMultiple, choices=()
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        existing = self.rule.parameters.get("entries", []) if self.rule is not None else []
        self.existing = existing
        if existing:
            self.fields["remove"].choices = [(e["bidx"], e["hint"]) for e in existing]
        else:
            del self.fields["remove"]

    def initial_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        return {}

    def parameters(self) -> dict[str, Any]:
        removed = set(self.cleaned_data.get("remove") or [])
        kept: list[Any] = [e for e in self.existing if e["bidx"] not in removed]
        return {"entries": kept + _lines(self.cleaned_data.get("entries", ""))}


FORMS: dict[str, type[RuleForm]] = {
    form.kind: form
    for form in (
        MaxAmountForm,
        VelocityForm,
        CountryMismatchForm,
        BlockEmailForm,
        BlockIpForm,
        BlockCardForm,
        BlockBinForm,
        RiskLevelForm,
    )
}
