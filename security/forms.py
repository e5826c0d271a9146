from __future__ import annotations

from django import forms


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=254, help_text="Actor id or part of their email.")
    action = forms.CharField(required=False, max_length=100, help_text="Exact action, or a prefix like auth.")
    target = forms.CharField(required=False, max_length=170, help_text="Target id, or type:id.")
    merchant = forms.CharField(required=False, max_length=64, label="Merchant id")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict:
        data = super().clean() or {}
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError("The start date must be on or before the end date.")
        return data


class RevealForm(forms.Form):
    reason = forms.CharField(
        min_length=10,
        max_length=300,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why you need to see the full value (recorded in the audit log).",
    )
