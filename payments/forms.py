from __future__ import annotations

from datetime import timedelta

from django import forms

from payments import money
from security.errors import ApplicationError

EXPIRY_CHOICES = [
    (60, "1 hour"),
    (24 * 60, "24 hours"),
    (7 * 24 * 60, "7 days"),
    (30 * 24 * 60, "30 days"),
]
COMMON_CURRENCIES = ["EUR", "GBP", "USD", "JPY", "CHF", "SEK", "KWD", "BHD", "KRW"]


class CheckoutSessionForm(forms.Form):
    amount = forms.CharField(
        label="Amount", max_length=24, help_text="For example 49.90 (JPY has no decimals)."
    )
    currency = forms.ChoiceField(label="Currency", choices=[(c, c) for c in COMMON_CURRENCIES], initial="EUR")
    description = forms.CharField(label="Description", max_length=500, required=False)
    customer_email = forms.EmailField(label="Customer email (optional)", required=False)
    expires_in_minutes = forms.TypedChoiceField(
        label="Link expires after", coerce=int, choices=EXPIRY_CHOICES, initial=24 * 60
    )

    def clean(self) -> dict:
        data = super().clean()
        if data.get("amount") and data.get("currency"):
            try:
                data["amount_minor"] = money.to_minor(data["amount"], data["currency"])
            except ApplicationError as exc:
                self.add_error("amount", exc.message)
            else:
                if data["amount_minor"] <= 0:
                    self.add_error("amount", "The amount must be more than zero.")
        if data.get("expires_in_minutes"):
            data["expires_in"] = timedelta(minutes=data["expires_in_minutes"])
        return data


class RefundForm(forms.Form):
    refund_id = forms.CharField(widget=forms.HiddenInput, max_length=40)
    amount = forms.CharField(
        label="Amount to refund",
        max_length=24,
        required=False,
        help_text="Leave empty to refund everything left.",
    )
    reason = forms.CharField(label="Reason", max_length=300, widget=forms.Textarea(attrs={"rows": 2}))
