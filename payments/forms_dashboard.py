"""The payments list's filters: parsed and checked here, applied by ``payments.selectors``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from django import forms

from payments import money
from payments.models import Payment
from payments.models.core import GATEWAY_CHOICES
from security.errors import ApplicationError

FILTER_FIELDS = (
    "q",
    "status",
    "currency",
    "gateway",
    "risk",
    "created_from",
    "created_to",
    "amount_min",
    "amount_max",
)
PAYMENT_ID_RE = re.compile(r"pay_[A-Za-z0-9]{1,36}")
RISK_CHOICES = [("", "Any risk outcome"), ("none", "Not evaluated")] + [
    (value, label) for value, label in Payment.FraudOutcome.choices if value
]


@dataclass(frozen=True)
class AmountBound:
    """A bound typed in major units: exact minor units for one currency, or per exponent for all."""

    text: str
    minor: int | None  # when a currency was chosen
    per_exponent: dict[int, int]  # otherwise: exponent -> minor units (rounded inwards)


@dataclass(frozen=True)
class PaymentFilters:
    payment_id: str = ""
    email: str = ""
    status: str = ""
    currency: str = ""
    gateway: str = ""
    risk: str = ""
    created_from: date | None = None
    created_to: date | None = None
    amount_min: AmountBound | None = None
    amount_max: AmountBound | None = None

    @property
    def active(self) -> bool:
        return any(getattr(self, f) for f in self.__dataclass_fields__)


def _bound(text: str, currency: str, *, lower: bool) -> AmountBound:
    if currency:
        return AmountBound(text, money.to_minor(text, currency), {})
    # Check the text's shape with the strictest parser (three decimals), then scale per exponent.
    money.to_minor(text, "KWD")
    value = Decimal(text.strip())
    rounding = ROUND_CEILING if lower else ROUND_FLOOR
    per = {e: int(value.scaleb(e).to_integral_value(rounding=rounding)) for e in (0, 2, 3)}
    return AmountBound(text, None, per)


class PaymentFilterForm(forms.Form):
    q = forms.CharField(
        label="Search",
        required=False,
        max_length=254,
        help_text="A payment id (pay_…) or a customer's full email address.",
    )
    status = forms.ChoiceField(
        label="Status", required=False, choices=[("", "Any status"), *Payment.Status.choices]
    )
    currency = forms.CharField(label="Currency", required=False, max_length=3)
    gateway = forms.ChoiceField(
        label="Gateway", required=False, choices=[("", "Any gateway"), *GATEWAY_CHOICES]
    )
    risk = forms.ChoiceField(label="Risk outcome", required=False, choices=RISK_CHOICES)
    created_from = forms.DateField(
        label="Created from", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(
        label="Created to", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    amount_min = forms.CharField(label="Amount from", required=False, max_length=24)
    amount_max = forms.CharField(label="Amount to", required=False, max_length=24)

    def clean_q(self) -> str:
        value = self.cleaned_data["q"].strip()
        if (
            value
            and not PAYMENT_ID_RE.fullmatch(value)
            and not ("@" in value and "." in value.rpartition("@")[2])
        ):
            raise forms.ValidationError("Search by a payment id (pay_…) or a customer's full email address.")
        return value

    def clean_currency(self) -> str:
        value = self.cleaned_data["currency"].strip()
        if not value:
            return ""
        try:
            return money.normalize_currency(value)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from exc

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and start > end:
            self.add_error("created_to", "The end date must be on or after the start date.")
        currency = data.get("currency") or ""
        for name, lower in (("amount_min", True), ("amount_max", False)):
            text = (data.get(name) or "").strip()
            if not text:
                data[name] = None
                continue
            try:
                data[name] = _bound(text, currency, lower=lower)
            except ApplicationError as exc:
                self.add_error(name, exc.message)
        low, high = data.get("amount_min"), data.get("amount_max")
        if (
            isinstance(low, AmountBound)
            and isinstance(high, AmountBound)
            and Decimal(low.text) > Decimal(high.text)
        ):
            self.add_error("amount_max", "The upper amount must not be below the lower amount.")
        return data

    def filters(self) -> PaymentFilters:
        """The checked filters (call after ``is_valid()``)."""
        d = self.cleaned_data
        q = d.get("q") or ""
        return PaymentFilters(
            payment_id=q if q.startswith("pay_") else "",
            email=q if q and not q.startswith("pay_") else "",
            status=d.get("status") or "",
            currency=d.get("currency") or "",
            gateway=d.get("gateway") or "",
            risk=d.get("risk") or "",
            created_from=d.get("created_from"),
            created_to=d.get("created_to"),
            amount_min=d.get("amount_min"),
            amount_max=d.get("amount_max"),
        )

    def raw(self) -> dict[str, str]:
        """The submitted filter values as text (stored on an export, shown in links)."""
        return {name: str(self.data.get(name, "")).strip() for name in FILTER_FIELDS if self.data.get(name)}
