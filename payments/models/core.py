"""Checkout sessions, payments and their append-only history, refunds, disputes, webhooks.

Money is an integer of minor units plus an ISO 4217 code (see ``payments.money``).
Status fields change only through ``payments.services`` (explicit transition
tables, history row and audit event in the same transaction).
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from security.fields import BlindIndexField, EncryptedJSONField, EncryptedTextField, EncryptionSubject
from security.ids import public_id_default

GATEWAY_CHOICES = [("stripe", "Stripe"), ("braintree", "Braintree"), ("simulated", "Simulated (test mode)")]


class Mode(models.TextChoices):
    TEST = "test", "Test"
    LIVE = "live", "Live"


class PaymentSettings(models.Model):
    """A merchant's payment configuration: which gateway, its connected account, SCA policy."""

    merchant = models.OneToOneField(
        "accounts.Merchant", on_delete=models.CASCADE, related_name="payment_settings"
    )
    gateway = models.CharField(max_length=20, choices=GATEWAY_CHOICES, blank=True)
    stripe_account = models.CharField(
        max_length=64, blank=True, help_text="The merchant's Stripe connected account (acct_…)"
    )
    braintree_merchant_account = models.CharField(max_length=64, blank=True)
    require_sca = models.BooleanField(
        default=False, help_text="Ask for 3D Secure on every payment the card supports (PSD2)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"payment settings of {self.merchant_id}"


class Customer(models.Model):
    """A person who paid a merchant. Their email is encrypted under their own key."""

    public_id = models.CharField(max_length=40, unique=True, default=public_id_default("cus"), editable=False)
    merchant = models.ForeignKey("accounts.Merchant", on_delete=models.CASCADE, related_name="customers")
    encryption_subject = EncryptionSubject("person")
    email = EncryptedTextField()
    email_bidx = BlindIndexField(source="email", kind="email", db_index=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["merchant", "email_bidx"], name="uniq_customer_email")]
        indexes = [models.Index(fields=["email_bidx"])]

    def __str__(self) -> str:
        return self.public_id


class CheckoutSession(models.Model):
    """A payment link: the amount and currency are fixed here, server-side."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        COMPLETE = "complete", "Paid"
        EXPIRED = "expired", "Expired"

    public_id = models.CharField(max_length=40, unique=True, default=public_id_default("cs"), editable=False)
    merchant = models.ForeignKey(
        "accounts.Merchant", on_delete=models.CASCADE, related_name="checkout_sessions"
    )
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    description = models.CharField(max_length=500, blank=True)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    gateway = models.CharField(max_length=20, choices=GATEWAY_CHOICES)
    mode = models.CharField(max_length=4, choices=Mode.choices, default=Mode.TEST)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    expires_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_via = models.CharField(max_length=8, default="ui")
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["merchant", "-created_at", "-id"], name="cs_merchant_created")]

    def __str__(self) -> str:
        return self.public_id

    def is_open_at(self, now: datetime) -> bool:
        return self.status == self.Status.OPEN and now < self.expires_at


class Payment(models.Model):
    """One attempt to take money for a checkout session, mirrored from the gateway."""

    class Status(models.TextChoices):
        REQUIRES_PAYMENT_METHOD = "requires_payment_method", "Awaiting payment"
        REQUIRES_ACTION = "requires_action", "Awaiting authentication"
        PROCESSING = "processing", "Processing"
        REQUIRES_CAPTURE = "requires_capture", "Authorised (awaiting capture)"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    class FraudOutcome(models.TextChoices):
        NONE = "", "Not evaluated"
        ALLOW = "allow", "Allow"
        REVIEW = "review", "Review"
        BLOCK = "block", "Block"

    class Review(models.TextChoices):
        NONE = "", "Not in review"
        PENDING = "pending", "Waiting for review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    public_id = models.CharField(max_length=40, unique=True, default=public_id_default("pay"), editable=False)
    merchant = models.ForeignKey("accounts.Merchant", on_delete=models.CASCADE, related_name="payments")
    checkout_session = models.ForeignKey(
        CheckoutSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="payments"
    )
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="payments"
    )
    gateway = models.CharField(max_length=20, choices=GATEWAY_CHOICES)
    mode = models.CharField(max_length=4, choices=Mode.choices, default=Mode.TEST)
    gateway_payment_id = models.CharField(max_length=80, null=True, blank=True)
    merchant_account = models.CharField(max_length=64, blank=True)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    description = models.CharField(max_length=500, blank=True)
    status = models.CharField(
        max_length=24, choices=Status.choices, default=Status.REQUIRES_PAYMENT_METHOD, db_index=False
    )
    capture_method = models.CharField(max_length=10, default="automatic")
    amount_captured = models.BigIntegerField(default=0)
    amount_refunded = models.BigIntegerField(default=0)
    amount_disputed = models.BigIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    # The last confirm call's answer was lost (a timeout): before another attempt is sent, the
    # gateway is asked whether that one went through (payments.services.checkout_confirm).
    confirm_outcome_unknown = models.BooleanField(default=False)
    sca_mode = models.CharField(max_length=10, default="automatic")
    # Card and customer signals (no card numbers: only what the gateway reports back).
    customer_ip = models.GenericIPAddressField(null=True, blank=True)
    ip_country = models.CharField(max_length=2, blank=True)
    card_brand = models.CharField(max_length=20, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    card_country = models.CharField(max_length=3, blank=True)
    card_fingerprint = models.CharField(max_length=64, blank=True)
    card_bin = models.CharField(
        max_length=8, blank=True
    )  # the first 6 or 8 digits, where the gateway gives them
    three_d_secure = models.CharField(max_length=32, blank=True)
    decline_code = models.CharField(max_length=64, blank=True)
    decline_message = models.CharField(max_length=300, blank=True)
    # Radar's outcome (Stripe) or Braintree's fraud decision, normalised.
    risk_provider = models.CharField(max_length=20, blank=True)
    risk_type = models.CharField(max_length=32, blank=True)
    risk_level = models.CharField(max_length=20, blank=True)
    risk_score = models.PositiveSmallIntegerField(null=True, blank=True)
    risk_reason = models.CharField(max_length=64, blank=True)
    risk_rule = models.CharField(max_length=120, blank=True)
    seller_message = models.CharField(max_length=300, blank=True)
    early_fraud_warning = models.BooleanField(default=False)
    # Our own fraud rules.
    fraud_outcome = models.CharField(max_length=6, choices=FraudOutcome.choices, blank=True, default="")
    fraud_rules_fired = models.JSONField(default=list, blank=True)
    review_status = models.CharField(max_length=10, choices=Review.choices, blank=True, default="")
    # The gateway time of the newest event applied: older events are recorded and ignored.
    last_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["gateway", "gateway_payment_id"],
                condition=Q(gateway_payment_id__isnull=False),
                name="uniq_payment_gateway_id",
            ),
        ]
        indexes = [
            # Keyset pagination of a merchant's payments, newest first, with and without filters.
            models.Index(fields=["merchant", "-created_at", "-id"], name="pay_merchant_created"),
            models.Index(fields=["merchant", "status", "-created_at", "-id"], name="pay_merchant_status"),
            models.Index(fields=["merchant", "currency", "-created_at", "-id"], name="pay_merchant_currency"),
            models.Index(
                fields=["merchant", "fraud_outcome", "-created_at", "-id"], name="pay_merchant_risk"
            ),
            models.Index(fields=["merchant", "customer", "-created_at"], name="pay_merchant_customer"),
            # Amount ranges narrow enough that walking the date index would take long.
            models.Index(fields=["merchant", "amount"], name="pay_merchant_amount"),
            models.Index(fields=["merchant", "review_status"], name="pay_merchant_review"),
            models.Index(fields=["status", "updated_at"], name="pay_status_updated"),
            # Fraud rules' velocity counts (per customer email uses pay_merchant_customer).
            models.Index(fields=["merchant", "customer_ip", "created_at"], name="pay_merchant_ip_created"),
            models.Index(
                fields=["merchant", "card_fingerprint", "created_at"], name="pay_merchant_card_created"
            ),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def amount_refundable(self) -> int:
        return max(0, self.amount_captured - self.amount_refunded)


class PaymentEvent(models.Model):
    """Append-only history of a payment: every state change, and every event we ignored."""

    class Kind(models.TextChoices):
        CREATED = "created", "Created"
        STATUS = "status", "Status changed"
        IGNORED = "ignored", "Event ignored"
        REFUND = "refund", "Refund"
        DISPUTE = "dispute", "Dispute"
        FRAUD = "fraud", "Fraud"
        REVIEW = "review", "Review"
        NOTE = "note", "Note"

    payment = models.ForeignKey(Payment, on_delete=models.CASCADE, related_name="events")
    merchant = models.ForeignKey("accounts.Merchant", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    from_status = models.CharField(max_length=24, blank=True)
    to_status = models.CharField(max_length=24, blank=True)
    message = models.CharField(max_length=300, blank=True)
    source = models.CharField(max_length=12, default="system")  # gateway, checkout, user, api, system
    actor_label = models.CharField(max_length=254, blank=True)
    gateway_event_id = models.CharField(max_length=255, blank=True)
    occurred_at = models.DateTimeField(default=timezone.now)
    recorded_at = models.DateTimeField(default=timezone.now)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["recorded_at", "id"]
        indexes = [models.Index(fields=["payment", "recorded_at"])]

    def __str__(self) -> str:
        return f"{self.payment_id} {self.kind} {self.to_status}"


class Refund(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    public_id = models.CharField(max_length=40, unique=True, default=public_id_default("re"), editable=False)
    merchant = models.ForeignKey("accounts.Merchant", on_delete=models.CASCADE, related_name="refunds")
    payment = models.ForeignKey(Payment, on_delete=models.CASCADE, related_name="refunds")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=300)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    method = models.CharField(max_length=6, default="refund")  # refund, or void (Braintree, unsettled)
    gateway_refund_id = models.CharField(max_length=80, blank=True)
    failure_reason = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_via = models.CharField(max_length=8, default="ui")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["merchant", "-created_at", "-id"], name="re_merchant_created"),
            models.Index(fields=["gateway_refund_id"], name="re_gateway_id"),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def awaiting_confirmation(self) -> bool:
        """Sent (or being sent) to the gateway with no answer read yet: pending until it is
        found there (``payments.services.refund_settle``)."""
        return self.status == self.Status.PENDING and not self.gateway_refund_id


class Dispute(models.Model):
    class Status(models.TextChoices):
        NEEDS_RESPONSE = "needs_response", "Needs response"
        UNDER_REVIEW = "under_review", "Under review"
        WON = "won", "Won"
        LOST = "lost", "Lost"
        CLOSED = "closed", "Closed"

    OPEN_STATUSES = (Status.NEEDS_RESPONSE, Status.UNDER_REVIEW)

    public_id = models.CharField(max_length=40, unique=True, default=public_id_default("dp"), editable=False)
    merchant = models.ForeignKey("accounts.Merchant", on_delete=models.CASCADE, related_name="disputes")
    payment = models.ForeignKey(Payment, on_delete=models.CASCADE, related_name="disputes")
    gateway = models.CharField(max_length=20, choices=GATEWAY_CHOICES)
    gateway_dispute_id = models.CharField(max_length=80)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEEDS_RESPONSE)
    evidence_due_by = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["evidence_due_by", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["gateway", "gateway_dispute_id"], name="uniq_dispute_gateway_id")
        ]
        indexes = [
            models.Index(fields=["merchant", "status", "evidence_due_by"], name="dp_merchant_status_due")
        ]

    def __str__(self) -> str:
        return self.public_id


def _key_period() -> str:
    return timezone.now().strftime("%Y-%m")


class WebhookEvent(models.Model):
    """A verified gateway webhook, stored at once and applied later by a Celery task.

    Unique on (gateway, event id), so a redelivery is recognised and applied once.
    The normalised event is encrypted under a per-month key (``key_period``):
    payloads carry customers' details, and shredding a month's key ends their
    retention in every backup at once.
    """

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        APPLIED = "applied", "Applied"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed"
        # Signed, but not about the payment it names: another connected account or merchant
        # account, the other mode, a gateway object that is not ours, another amount or
        # currency. Kept, never applied, audited, and listed for platform admins.
        MISMATCHED = "mismatched", "Mismatched (held)"

    public_id = models.CharField(max_length=40, unique=True, default=public_id_default("whe"), editable=False)
    gateway = models.CharField(max_length=20, choices=GATEWAY_CHOICES)
    event_id = models.CharField(max_length=255)
    type = models.CharField(max_length=80)
    object_id = models.CharField(max_length=80, blank=True)
    created_at_gateway = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveIntegerField(default=0)
    applied_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    merchant = models.ForeignKey(
        "accounts.Merchant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    key_period = models.CharField(max_length=7, default=_key_period, editable=False)
    encryption_subject = EncryptionSubject("webhook_period", "key_period")
    event = EncryptedJSONField(default=dict)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["gateway", "event_id"], name="uniq_webhook_event")]
        indexes = [models.Index(fields=["status", "received_at"], name="whe_status_received")]

    def __str__(self) -> str:
        return f"{self.gateway}:{self.event_id}"
