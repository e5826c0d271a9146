"""The merchant API's objects and request bodies.

The same representations are the ``data.object`` of outgoing merchant webhooks,
so an integration parses one shape. Amounts are integers of minor units with an
ISO 4217 code; times are Unix timestamps (seconds, UTC); public ids only; the
customer's email appears masked (``j•••@example.com``), nothing else personal.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from payments import money
from payments.models import CheckoutSession, Customer, Payment, Refund
from security.crypto import ERASED
from security.errors import ApplicationError
from security.masking import mask_email

MAX_EXPIRES_IN = 30 * 24 * 3600
MIN_EXPIRES_IN = 5 * 60
DEFAULT_EXPIRES_IN = 24 * 3600


def unix(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def masked_customer_email(customer: Customer | None) -> str | None:
    if customer is None:
        return None
    email = customer.email
    if email is ERASED:
        return None
    return mask_email(email) if email else None


@extend_schema_field(OpenApiTypes.INT)
class UnixTimeField(serializers.Field):
    """A timezone-aware datetime as whole seconds since the Unix epoch."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value: datetime) -> int | None:
        return unix(value)


class _ObjectSerializer(serializers.Serializer):
    """Read-only representation with an ``object`` type tag, Stripe style."""

    object_name = ""

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        return {"id": data.pop("id"), "object": self.object_name, **data}


class CardSerializer(serializers.Serializer):
    """The card as the gateway describes it (never its number)."""

    brand = serializers.CharField()
    last4 = serializers.CharField()
    country = serializers.CharField(allow_blank=True)


class CheckoutSessionSerializer(_ObjectSerializer):
    """A payment link for a fixed amount: send the customer to ``url``."""

    object_name = "checkout_session"

    id = serializers.CharField(source="public_id", help_text="cs_…")
    object = serializers.SerializerMethodField(help_text="Always checkout_session.")
    amount = serializers.IntegerField(help_text="In minor units of the currency (cents for EUR).")
    currency = serializers.CharField(help_text="ISO 4217 code, upper case.")
    description = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=CheckoutSession.Status.values)
    livemode = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField(help_text="The hosted payment page to send the customer to.")
    customer_email = serializers.SerializerMethodField(help_text="Masked.")
    created = UnixTimeField(source="created_at")
    expires_at = UnixTimeField()
    completed_at = UnixTimeField(allow_null=True)

    def get_object(self, obj: CheckoutSession) -> str:
        return self.object_name

    def get_livemode(self, obj: CheckoutSession) -> bool:
        return obj.mode == "live"

    def get_url(self, obj: CheckoutSession) -> str:
        return f"{settings.SITE_URL.rstrip('/')}/pay/{obj.public_id}/"

    def get_customer_email(self, obj: CheckoutSession) -> str | None:
        return masked_customer_email(obj.customer)


class PaymentSerializer(_ObjectSerializer):
    """One attempt to take money for a checkout session, as the gateway reported it."""

    object_name = "payment"

    id = serializers.CharField(source="public_id", help_text="pay_…")
    object = serializers.SerializerMethodField(help_text="Always payment.")
    amount = serializers.IntegerField(help_text="In minor units of the currency.")
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=Payment.Status.values)
    amount_captured = serializers.IntegerField()
    amount_refunded = serializers.IntegerField()
    amount_refundable = serializers.IntegerField(help_text="Captured minus refunded (pending refunds aside).")
    description = serializers.CharField(allow_blank=True)
    livemode = serializers.SerializerMethodField()
    checkout_session = serializers.SerializerMethodField(help_text="cs_…, or null.")
    customer = serializers.SerializerMethodField(help_text="cus_…, or null.")
    customer_email = serializers.SerializerMethodField(help_text="Masked.")
    card = serializers.SerializerMethodField()
    decline_code = serializers.CharField(allow_blank=True)
    decline_message = serializers.CharField(allow_blank=True)
    created = UnixTimeField(source="created_at")
    succeeded_at = UnixTimeField(allow_null=True)

    def get_object(self, obj: Payment) -> str:
        return self.object_name

    def get_livemode(self, obj: Payment) -> bool:
        return obj.mode == "live"

    def get_checkout_session(self, obj: Payment) -> str | None:
        return obj.checkout_session.public_id if obj.checkout_session_id and obj.checkout_session else None

    def get_customer(self, obj: Payment) -> str | None:
        return obj.customer.public_id if obj.customer_id and obj.customer else None

    def get_customer_email(self, obj: Payment) -> str | None:
        return masked_customer_email(obj.customer if obj.customer_id else None)

    @extend_schema_field(CardSerializer(allow_null=True))
    def get_card(self, obj: Payment) -> dict[str, str] | None:
        if not obj.card_last4:
            return None
        return {"brand": obj.card_brand, "last4": obj.card_last4, "country": obj.card_country}


class RefundSerializer(_ObjectSerializer):
    """Money returned to the customer for (part of) a payment."""

    object_name = "refund"

    id = serializers.CharField(source="public_id", help_text="re_…")
    object = serializers.SerializerMethodField(help_text="Always refund.")
    payment = serializers.CharField(source="payment.public_id", help_text="pay_…")
    amount = serializers.IntegerField(help_text="In minor units of the currency.")
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=Refund.Status.values)
    reason = serializers.CharField()
    failure_reason = serializers.CharField(allow_blank=True)
    livemode = serializers.SerializerMethodField()
    created = UnixTimeField(source="created_at")

    def get_object(self, obj: Refund) -> str:
        return self.object_name

    def get_livemode(self, obj: Refund) -> bool:
        return obj.payment.mode == "live"


def list_envelope(item: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    """The documented shape of a page of ``item`` objects."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "__doc__": f"A page of {item.object_name}s, newest first.",  # type: ignore[attr-defined]
            "object": serializers.CharField(help_text="Always list."),
            "url": serializers.CharField(),
            "data": item(many=True),
            "has_more": serializers.BooleanField(help_text="Whether another page follows this one."),
            "next_cursor": serializers.CharField(
                allow_null=True, help_text="Pass as starting_after to get the next page (null on the last)."
            ),
        },
    )


CheckoutSessionList = list_envelope(CheckoutSessionSerializer, "CheckoutSessionList")
PaymentList = list_envelope(PaymentSerializer, "PaymentList")
RefundList = list_envelope(RefundSerializer, "RefundList")


# --- Request bodies -----------------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.INT)
class MinorAmountField(serializers.Field):
    """A whole number of minor units: a JSON integer (or digits in a form body), never a float."""

    default_error_messages = {
        "invalid": "Send an integer number of minor units (e.g. 4990 for 49.90 EUR).",
        "min_value": "Must be more than zero.",
        "max_value": "Is too large.",
    }

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, int):
            value = data
        elif isinstance(data, str) and re.fullmatch(r"\d{1,16}", data.strip()):
            value = int(data.strip())
        else:
            self.fail("invalid")
        if value <= 0:
            self.fail("min_value")
        if value > money.MAX_MINOR_AMOUNT:
            self.fail("max_value")
        return value

    def to_representation(self, value: int) -> int:
        return value


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, so a typo is an error rather than silently ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "keys"):
            unknown = sorted(set(data.keys()) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(dict.fromkeys(unknown, ["Unknown field."]))
        return super().to_internal_value(data)


class CheckoutSessionCreateSerializer(StrictSerializer):
    """A new payment link. Unknown fields are refused."""

    amount = MinorAmountField(help_text="In minor units: 4990 is 49.90 EUR, 500 is 500 JPY.")
    currency = serializers.CharField(max_length=3, help_text="ISO 4217 code, e.g. EUR.")
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    customer_email = serializers.EmailField(required=False, allow_blank=True, default="")
    expires_in = serializers.IntegerField(
        required=False,
        min_value=MIN_EXPIRES_IN,
        max_value=MAX_EXPIRES_IN,
        default=DEFAULT_EXPIRES_IN,
        help_text="Seconds until the link stops accepting payments (5 minutes to 30 days; default 24 hours).",
    )

    def validate_currency(self, value: str) -> str:
        try:
            return money.normalize_currency(value)
        except ApplicationError as exc:
            raise serializers.ValidationError(exc.message) from exc


class RefundCreateSerializer(StrictSerializer):
    """A refund of a succeeded payment. Unknown fields are refused."""

    payment = serializers.CharField(max_length=40, help_text="The payment to refund (pay_…).")
    amount = MinorAmountField(
        required=False,
        help_text="In minor units; leave out to refund everything still refundable.",
    )
    reason = serializers.CharField(max_length=300, help_text="Why; shown in the payment's history.")


class ErrorDetailSerializer(serializers.Serializer):
    """What went wrong."""

    code = serializers.CharField(help_text="Stable, machine-readable (e.g. amount_too_large).")
    message = serializers.CharField(help_text="Human-readable; may change.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Per-field messages, for code invalid_request.",
    )


class ErrorSerializer(serializers.Serializer):
    """Every error answer has this shape."""

    error = ErrorDetailSerializer()
