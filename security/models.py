from __future__ import annotations

from django.db import models
from django.utils import timezone

from security.ids import public_id_default


class AuditEvent(models.Model):
    """One entry of the append-only, hash-chained audit log.

    ``hash`` is the HMAC-SHA256, under ``AUDIT_CHAIN_KEY``, of the event's
    canonical JSON, which includes ``prev_hash``; the rows therefore form one
    chain that any edit, deletion or reordering breaks, and that nobody without
    the key (held outside the database) can recompute. Events written before
    the ``audit.chain_keyed`` cut-over event carry a plain SHA-256. Write only
    through :func:`security.audit.record`.
    """

    sequence = models.PositiveBigIntegerField(unique=True)
    occurred_at = models.DateTimeField(db_index=True)
    actor_id = models.CharField(max_length=64, blank=True, db_index=True)
    actor_label = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=64, blank=True, db_index=True)
    merchant_id = models.CharField(max_length=64, blank=True, db_index=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-sequence"]
        permissions = [("view_audit_log", "Can browse and export the audit log")]
        indexes = [models.Index(fields=["target_type", "target_id"])]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action} by {self.actor_label or 'system'}"


class AuditChainHead(models.Model):
    """The one row that says where the audit chain ends.

    :func:`security.audit.record` locks it (an ``UPDATE`` first, so PostgreSQL
    takes a row lock and SQLite its write lock) before appending, which keeps
    the chain linear under concurrent writers without reading the event table.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_sequence = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)
    # Id (a fingerprint, never the key) of the audit chain key the newest events are HMAC-ed
    # with; empty before the cut-over. A different configured key makes the next append
    # write a new cut-over event first.
    key_id = models.CharField(max_length=16, blank=True, default="")

    def __str__(self) -> str:
        return f"audit chain head at #{self.last_sequence}"


class AuditCheckpoint(models.Model):
    """ "Archived up to sequence N with last hash H": written when old events are archived.

    The verifier starts the live chain from the latest checkpoint instead of the
    genesis hash. Rows here are never edited.
    """

    through_sequence = models.PositiveBigIntegerField(unique=True)
    last_hash = models.CharField(max_length=64)
    first_sequence = models.PositiveBigIntegerField()
    event_count = models.PositiveIntegerField()
    archived_at = models.DateTimeField()
    archived_before = models.DateTimeField(help_text="Events strictly older than this were archived.")
    file_name = models.CharField(max_length=300)
    file_sha256 = models.CharField(max_length=64)
    public_key = models.CharField(max_length=100, help_text="Base64 Ed25519 public key that signed the file.")

    class Meta:
        ordering = ["-through_sequence"]

    def __str__(self) -> str:
        return f"archived through #{self.through_sequence}"


class DataKey(models.Model):
    """One data subject's data-encryption key, wrapped by a key-encryption key (KEK).

    Subjects are referenced by plain strings (``subject_kind`` such as ``person``
    or ``merchant``, and ``subject_id``, usually a public id) because the
    security app may not point foreign keys into other apps. Shredding wipes
    ``wrapped_key`` and stamps ``shredded_at``: every value encrypted under the
    key becomes unreadable for good.
    """

    key_id = models.CharField(max_length=40, unique=True, default=public_id_default("dk"), editable=False)
    subject_kind = models.CharField(max_length=40)
    subject_id = models.CharField(max_length=64)
    wrapped_key = models.BinaryField(blank=True, default=b"")
    kek_id = models.CharField(max_length=32, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    rotated_at = models.DateTimeField(null=True, blank=True)
    shredded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        permissions = [("reveal_pii", "Can reveal full personal data (each reveal is audited)")]
        constraints = [
            models.UniqueConstraint(
                fields=["subject_kind", "subject_id"],
                condition=models.Q(shredded_at__isnull=True),
                name="uniq_live_data_key_per_subject",
            )
        ]
        indexes = [models.Index(fields=["subject_kind", "subject_id"])]

    def __str__(self) -> str:
        return f"{self.key_id} ({self.subject_kind}:{self.subject_id})"


class KeyRotation(models.Model):
    """Progress of one ``rotate_keys`` run: re-wrapping data keys under a new KEK.

    The cursor and counts are saved in the same transaction as each batch, so a
    crashed run resumes where it stopped, and a page can poll this row.
    """

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        FAILED = "failed", "Failed (resumable)"
        COMPLETED = "completed", "Completed"
        SUPERSEDED = "superseded", "Superseded by a newer rotation"

    public_id = models.CharField(
        max_length=40, unique=True, default=public_id_default("krot"), editable=False
    )
    target_kek_id = models.CharField(max_length=32)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RUNNING)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    batches = models.PositiveIntegerField(default=0)
    cursor = models.PositiveBigIntegerField(default=0, help_text="Highest DataKey id already handled.")
    last_error = models.CharField(max_length=500, blank=True)
    started_by = models.CharField(max_length=254, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        permissions = [("manage_keys", "Can see encryption key status and start key rotation")]

    def __str__(self) -> str:
        return f"rotation to {self.target_kek_id}: {self.done}/{self.total} ({self.status})"

    @property
    def percent(self) -> int:
        return 100 if not self.total else min(100, (self.done * 100) // self.total)
