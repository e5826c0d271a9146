"""The merchant dashboard's own tables: a daily rollup behind the charts, and CSV exports."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from security.fields import EncryptedBinaryField, EncryptionSubject
from security.ids import public_id_default


class PaymentDailyStat(models.Model):
    """How many payments (and how much money) ended in one outcome on one UTC day.

    One row per merchant, day, currency, outcome and decline code. Payments count
    on the UTC day they were created; disputes on the day they were opened. Kept
    current by ``payments.stats`` from the payment services (in the same
    transaction as the status change) and rebuilt from scratch by
    ``manage.py rebuild_payment_stats``.
    """

    class Outcome(models.TextChoices):
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"
        DISPUTE = "dispute", "Dispute opened"

    merchant = models.ForeignKey("accounts.Merchant", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    currency = models.CharField(max_length=3)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    decline_code = models.CharField(max_length=64, blank=True, default="")
    count = models.BigIntegerField(default=0)
    amount = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "day", "currency", "outcome", "decline_code"], name="uniq_pay_daily_stat"
            )
        ]

    def __str__(self) -> str:
        return f"{self.merchant_id} {self.day} {self.currency} {self.outcome} {self.count}"


class PaymentExport(models.Model):
    """A CSV export of a merchant's payments, built by a Celery task; the file is encrypted at rest."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Ready"
        FAILED = "failed", "Failed"

    public_id = models.CharField(max_length=40, unique=True, default=public_id_default("exp"), editable=False)
    merchant = models.ForeignKey(
        "accounts.Merchant", on_delete=models.CASCADE, related_name="payment_exports"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    filters = models.JSONField(default=dict, blank=True)
    full_emails = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    rows_done = models.PositiveIntegerField(default=0)
    rows_total = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)
    size = models.PositiveBigIntegerField(default=0)  # bytes of CSV stored in its parts
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    downloads = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["merchant", "-created_at"], name="exp_merchant_created"),
            models.Index(fields=["expires_at"], name="exp_expires"),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def percent(self) -> int:
        if self.status == self.Status.SUCCEEDED:
            return 100
        if not self.rows_total:
            return 0
        return min(100, self.rows_done * 100 // self.rows_total)

    @property
    def file_name(self) -> str:
        return f"payments-{self.created_at:%Y%m%d-%H%M}-{self.public_id}.csv"

    def is_expired(self, now=None) -> bool:  # noqa: ANN001
        return bool(self.expires_at and (now or timezone.now()) >= self.expires_at)


class PaymentExportPart(models.Model):
    """One batch of an export's CSV (the first part starts with the header row).

    A large export is written, and downloaded, a part at a time, so neither the task nor
    the download ever holds the whole file in memory. Encrypted under the merchant's key.
    """

    public_id = models.CharField(
        max_length=40, unique=True, default=public_id_default("expp"), editable=False
    )
    export = models.ForeignKey(PaymentExport, on_delete=models.CASCADE, related_name="parts")
    merchant = models.ForeignKey("accounts.Merchant", on_delete=models.CASCADE, related_name="+")
    number = models.PositiveIntegerField()
    rows = models.PositiveIntegerField(default=0)
    content = EncryptedBinaryField(subject=EncryptionSubject("merchant", "merchant__public_id"))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["export", "number"], name="uniq_export_part")]

    def __str__(self) -> str:
        return f"{self.export_id}#{self.number}"
