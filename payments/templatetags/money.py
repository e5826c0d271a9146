from __future__ import annotations

from django import template

from payments.money import format_minor

register = template.Library()


@register.filter(name="money")
def money_filter(amount: int | None, currency: str) -> str:
    """``{{ payment.amount|money:payment.currency }}`` → "1,234.56 EUR" (JPY without decimals)."""
    if amount is None or not currency:
        return ""
    return format_minor(int(amount), currency)
