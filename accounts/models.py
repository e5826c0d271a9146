"""People, tenants and their second factors."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django_otp.models import Device, ThrottlingMixin, TimestampMixin
from django_otp.plugins.otp_totp import models as otp_totp

from security.blind_index import derived_key
from security.fields import EncryptedTextField, EncryptionSubject
from security.ids import public_id_default


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra: object) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=normalize_email(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> User:
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create_user(email, password, **extra)

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email__iexact=normalize_email(username or ""))


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


class User(AbstractBaseUser, PermissionsMixin):
    """A person who signs in. Email is the login; ``is_staff`` opens the Django admin."""

    public_id = models.CharField(max_length=40, unique=True, default=public_id_default("usr"), editable=False)
    email = models.EmailField("email address", unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(
        "admin site access",
        default=False,
        help_text="Can open the Django admin (still behind the second factor).",
    )
    date_joined = models.DateTimeField(default=timezone.now)
    # Bumped by "sign out everywhere": every session hash includes it.
    session_epoch = models.PositiveIntegerField(default=0)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = []  # noqa: RUF012

    class Meta:
        ordering = ["email"]
        permissions = [
            ("access_staff_area", "Can use the staff back office"),
        ]

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        super().clean()
        self.email = normalize_email(self.email)

    def save(self, *args: object, **kwargs: object) -> None:
        self.email = normalize_email(self.email)
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def get_full_name(self) -> str:
        return self.full_name or self.email

    def get_short_name(self) -> str:
        return self.full_name.split(" ")[0] if self.full_name else self.email

    # Sessions carry a hash of the password *and* the epoch, so bumping the
    # epoch signs the user out of every browser at once.
    def _get_session_auth_hash(self, secret: str | None = None) -> str:
        key_salt = "accounts.User.get_session_auth_hash"
        return salted_hmac(
            key_salt,
            f"{self.password}:{self.session_epoch}",
            secret=secret,
            algorithm="sha256",
        ).hexdigest()

    @property
    def is_platform_staff(self) -> bool:
        """Staff of the platform (any staff role) or a platform admin."""
        if self.is_superuser:
            return True
        return self.has_perm("accounts.access_staff_area")


class Merchant(models.Model):
    """The tenant: every merchant-owned row points here."""

    class Region(models.TextChoices):
        EU = "eu", "European Union"
        US = "us", "United States"

    class Status(models.TextChoices):
        ONBOARDING = "onboarding", "Onboarding"
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    public_id = models.CharField(max_length=40, unique=True, default=public_id_default("mer"), editable=False)
    display_name = models.CharField(max_length=120)
    legal_name = models.CharField(max_length=200)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2 code")
    data_region = models.CharField(max_length=2, choices=Region.choices, default=Region.EU)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ONBOARDING)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["display_name"]

    def __str__(self) -> str:
        return self.display_name


class MerchantStatusChange(models.Model):
    """History of a merchant's status, written by ``merchant_set_status``."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=12)
    to_status = models.CharField(max_length=12)
    reason = models.CharField(max_length=500, blank=True)
    changed_by = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-changed_at"]

    def __str__(self) -> str:
        return f"{self.merchant_id}: {self.from_status} -> {self.to_status}"


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    ANALYST = "analyst", "Analyst"
    DEVELOPER = "developer", "Developer"


class Membership(models.Model):
    """A user's seat at a merchant, with a role."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=12, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "merchant"], name="uniq_membership"),
        ]
        ordering = ["merchant_id", "created_at"]

    def __str__(self) -> str:
        return f"{self.user} @ {self.merchant} ({self.role})"


class Invitation(models.Model):
    """A single-use, expiring link that lets someone join a merchant's team."""

    public_id = models.CharField(max_length=40, unique=True, default=public_id_default("inv"), editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=12, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["merchant", "email"])]

    def __str__(self) -> str:
        return f"Invitation {self.public_id} to {self.merchant}"

    @staticmethod
    def hash_token(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def status_at(self, now: datetime) -> str:
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        if now >= self.expires_at:
            return "expired"
        return "pending"

    @property
    def status(self) -> str:
        return self.status_at(timezone.now())


class EncryptedTOTPDevice(TimestampMixin, ThrottlingMixin, Device):
    """An authenticator app (TOTP) whose secret is encrypted at rest.

    django-otp's ``TOTPDevice`` keeps the secret in clear (a copy of the database
    would let anyone compute codes). This is the same device with the secret in
    an encrypted field bound to this row and to the user's data key; the
    verification, drift, replay protection (``last_t``) and throttling are
    django-otp's own code, borrowed unchanged.
    """

    public_id = models.CharField(
        max_length=40, unique=True, default=public_id_default("totp"), editable=False
    )
    key = EncryptedTextField(
        subject=EncryptionSubject("user", "user__public_id"),
        default=otp_totp.default_key,
        validators=[otp_totp.key_validator],
        help_text="A hex-encoded secret key of up to 40 bytes (encrypted at rest).",
    )
    step = models.PositiveSmallIntegerField(default=30)
    t0 = models.BigIntegerField(default=0)
    digits = models.PositiveSmallIntegerField(choices=[(6, 6), (8, 8)], default=6)
    tolerance = models.PositiveSmallIntegerField(default=1)
    drift = models.SmallIntegerField(default=0)
    last_t = models.BigIntegerField(
        default=-1, help_text="The time step of the last verified code; only later ones are accepted."
    )

    class Meta(Device.Meta):
        verbose_name = "TOTP device"

    # django-otp's TOTPDevice behaviour, unchanged: it only reads the fields above.
    bin_key = otp_totp.TOTPDevice.bin_key
    verify_token = otp_totp.TOTPDevice.verify_token
    get_throttle_factor = otp_totp.TOTPDevice.get_throttle_factor
    config_url = otp_totp.TOTPDevice.config_url
    _read_str_from_settings = otp_totp.TOTPDevice._read_str_from_settings


BACKUP_CODE_KEY_PURPOSE = "accounts.backup_codes.v1"


def backup_code_digest(legacy_hash: str) -> str:
    """What is stored for a backup code: HMAC-SHA256 under a key that never touches the database.

    Its input is the old unkeyed digest (SHA-256 of ``user_id:code``), so rows
    written before keying were converted in place by a data migration.
    """
    return hmac.new(derived_key(BACKUP_CODE_KEY_PURPOSE), legacy_hash.encode(), hashlib.sha256).hexdigest()


class BackupCodeDevice(TimestampMixin, ThrottlingMixin, Device):
    """Single-use backup codes, stored only as keyed hashes.

    (django-otp's StaticDevice keeps its tokens in clear text; a copy of the
    database would hand out working codes. An unkeyed hash would not do either:
    ten characters from a 31-letter alphabet are about 50 bits, within reach of
    an offline search.) The key is derived from ``BLIND_INDEX_KEY`` (see
    :func:`backup_code_digest`).
    """

    class Meta:
        verbose_name = "backup code set"

    def get_throttle_factor(self) -> int:
        from django.conf import settings

        return int(getattr(settings, "OTP_STATIC_THROTTLE_FACTOR", 1))

    @staticmethod
    def legacy_hash(user_id: int, code: str) -> str:
        normalised = "".join(ch for ch in code.lower() if ch.isalnum())
        return hashlib.sha256(f"{user_id}:{normalised}".encode()).hexdigest()

    def hash_code(self, code: str) -> str:
        return backup_code_digest(self.legacy_hash(self.user_id, code))

    def verify_token(self, token: str) -> bool:
        allowed, _ = self.verify_is_allowed()
        if not allowed:
            return False
        updated = self.codes.filter(
            code_hash=self.hash_code(str(token)), keyed=True, used_at__isnull=True
        ).update(used_at=timezone.now())
        if updated:
            self.throttle_reset(commit=False)
            self.set_last_used_timestamp(commit=False)
            self.save()
            return True
        self.throttle_increment()
        return False

    def remaining(self) -> int:
        return self.codes.filter(used_at__isnull=True).count()


class BackupCode(models.Model):
    device = models.ForeignKey(BackupCodeDevice, on_delete=models.CASCADE, related_name="codes")
    code_hash = models.CharField(max_length=64)
    # False only on rows written before keying, until the data migration converts them.
    keyed = models.BooleanField(default=True, editable=False)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "code_hash"], name="uniq_backup_code"),
        ]

    def __str__(self) -> str:
        return f"backup code {self.pk} ({'used' if self.used_at else 'unused'})"


class ApiKey(models.Model):
    """A merchant's secret API key. Only a SHA-256 of the secret is stored.

    The full key looks like ``fp_test_<lookup><secret>``; the first characters
    after the mode (the lookup) are stored in clear to find the row and to show
    the key in lists, the rest is never stored.
    """

    class Scope(models.TextChoices):
        READ = "read", "Read only"
        WRITE = "write", "Read and write"

    class Mode(models.TextChoices):
        TEST = "test", "Test"
        LIVE = "live", "Live"

    public_id = models.CharField(max_length=40, unique=True, default=public_id_default("key"), editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=80)
    mode = models.CharField(max_length=4, choices=Mode.choices, default=Mode.TEST)
    scope = models.CharField(max_length=5, choices=Scope.choices, default=Scope.READ)
    lookup = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)
    rotated_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rotated_from"
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["merchant", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.display_prefix}…)"

    @property
    def display_prefix(self) -> str:
        return f"fp_{self.mode}_{self.lookup}"

    def status_at(self, now: datetime) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and now >= self.expires_at:
            return "expired"
        return "active"

    @property
    def status(self) -> str:
        return self.status_at(timezone.now())
