"""Model fields that encrypt on save and decrypt on read, and blind index fields.

A model that uses them declares who the data belongs to and a stable row id::

    class Party(models.Model):
        public_id = models.CharField(max_length=40, unique=True, default=public_id_default("pty"))
        encryption_subject = EncryptionSubject("person")          # subject id: this row's public_id
        # encryption_row_field = "public_id"                      # the default

        full_name = EncryptedTextField()
        email = EncryptedTextField(blank=True)
        email_bidx = BlindIndexField(source="email", kind="email")
        born_on = EncryptedDateField(null=True)
        answers = EncryptedJSONField(default=dict)
        passport_scan = EncryptedFileField(upload_to="kyc/", blank=True)
        merchant_note = EncryptedTextField(
            blank=True, subject=EncryptionSubject("merchant", "merchant__public_id")
        )

* ``encryption_row_field`` (default ``public_id``) names a field whose value
  exists before the INSERT (give it a default) and never changes: every value
  is bound to it, so a ciphertext copied to another row fails to decrypt.
* ``encryption_subject`` (or a field's ``subject=``) is an
  :class:`EncryptionSubject`: a kind and a lookup path to the subject's id.
  The path must be a database lookup (``public_id``, ``customer_ref``,
  ``merchant__public_id``) so shredding can find the subject's rows.

Values decrypt lazily, on first attribute access, and read as
:data:`security.crypto.ERASED` once the subject is shredded. Encrypted columns
cannot be filtered (only ``isnull``) or written with ``QuerySet.update()`` /
``bulk_update()``; use ``save()`` / ``bulk_create()`` and the blind index.
"""

from __future__ import annotations

import datetime
import io
import json
from typing import Any

from django.core import checks
from django.core.exceptions import FieldDoesNotExist, FieldError
from django.core.files.base import ContentFile, File
from django.db import models
from django.db.models.fields.files import FieldFile
from django.db.models.lookups import Exact
from django.db.models.query_utils import DeferredAttribute
from django.utils.deconstruct import deconstructible

from security import crypto
from security.blind_index import NORMALISERS, BlindIndexDigest, blind_index
from security.crypto import ERASED, Subject


class EncryptedFieldError(FieldError):
    pass


@deconstructible
class EncryptionSubject:
    """Whose data key encrypts a value: ``kind`` and a lookup path to the subject's id."""

    def __init__(self, kind: str, field: str = "public_id") -> None:
        self.kind = kind
        self.field = field

    def resolve(self, instance: models.Model) -> Subject:
        value: Any = instance
        for part in self.field.split("__"):
            value = getattr(value, part, None)
            if value is None:
                break
        if value in (None, ""):
            raise EncryptedFieldError(
                f"{instance.__class__.__name__}: the encryption subject ({self.kind} via {self.field!r}) "
                "is empty, so the value cannot be encrypted."
            )
        return Subject(self.kind, str(value))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EncryptionSubject) and (other.kind, other.field) == (self.kind, self.field)

    def __hash__(self) -> int:
        return hash((self.kind, self.field))

    def __repr__(self) -> str:
        return f"EncryptionSubject({self.kind!r}, {self.field!r})"


class Sealed:
    """An encrypted value as loaded from the database, not yet decrypted."""

    __slots__ = ("erased", "token")

    def __init__(self, token: str) -> None:
        self.token = token
        self.erased = False

    def __repr__(self) -> str:
        return "<Sealed encrypted value>"

    def __str__(self) -> str:
        return "[encrypted]"

    def __getstate__(self) -> tuple[str, bool]:
        return (self.token, self.erased)

    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.token, self.erased = state


class _Ciphertext(str):
    """A token produced by ``pre_save`` for this very save."""


class EncryptedAttribute(DeferredAttribute):
    """Decrypts on first access (bound to the instance's table, column and row)."""

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        try:
            value = instance.__dict__[self.field.attname]
        except KeyError:
            value = super().__get__(instance, cls)
        if value.__class__ is Sealed:
            return self.field.open(instance, value)
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.field.attname] = value


class _EncryptedExact(Exact):
    def __init__(self, lhs: Any, rhs: Any) -> None:
        if rhs is not None:
            raise EncryptedFieldError(
                f"Encrypted field {lhs.output_field.name!r} cannot be compared; filter on its blind index."
            )
        super().__init__(lhs, rhs)


class EncryptedMixin:
    """Shared behaviour of the encrypted fields. Subclasses convert values to and from bytes."""

    descriptor_class = EncryptedAttribute
    encrypted = True

    def __init__(self, *args: Any, subject: EncryptionSubject | None = None, **kwargs: Any) -> None:
        self.subject = subject
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]

    # --- what subclasses provide
    def to_bytes(self, value: Any) -> bytes:
        raise NotImplementedError

    def from_bytes(self, data: bytes) -> Any:
        raise NotImplementedError

    # --- declaration
    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()  # type: ignore[misc]
        if self.subject is not None:
            kwargs["subject"] = self.subject
        return name, path, args, kwargs

    def get_internal_type(self) -> str:
        return "TextField"

    def subject_spec(self) -> EncryptionSubject | None:
        return self.subject or getattr(self.model, "encryption_subject", None)  # type: ignore[attr-defined]

    def row_field_name(self) -> str:
        return getattr(self.model, "encryption_row_field", "public_id")  # type: ignore[attr-defined]

    def place(self, instance: models.Model) -> str:
        row_id = getattr(instance, self.row_field_name(), None)
        if not row_id:
            raise EncryptedFieldError(
                f"{instance.__class__.__name__}.{self.row_field_name()} must be set before an encrypted "
                "value is saved or read: it binds the value to its row."
            )
        return crypto.binding(self.model._meta.db_table, self.column, str(row_id))  # type: ignore[attr-defined]

    def subject_for(self, instance: models.Model) -> Subject:
        spec = self.subject_spec()
        if spec is None:
            raise EncryptedFieldError(f"{instance.__class__.__name__} declares no encryption_subject.")
        return spec.resolve(instance)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors = super().check(**kwargs)  # type: ignore[misc]
        model = self.model  # type: ignore[attr-defined]
        row_field = self.row_field_name()
        try:
            row = model._meta.get_field(row_field)
        except FieldDoesNotExist:
            errors.append(
                checks.Error(
                    f"{model.__name__} has encrypted fields but no {row_field!r} field to bind them to.",
                    hint="Add public_id with a default (security.ids.public_id_default) or set "
                    "encryption_row_field to a field whose value exists before INSERT and never changes.",
                    obj=self,
                    id="security.E010",
                )
            )
        else:
            if not row.has_default() and not getattr(row, "auto_now_add", False):
                errors.append(
                    checks.Error(
                        f"{model.__name__}.{row_field} needs a default: encrypted values are bound "
                        "to it on INSERT.",
                        obj=self,
                        id="security.E011",
                    )
                )
        spec = self.subject_spec()
        if spec is None:
            errors.append(
                checks.Error(
                    f"{model.__name__}.{self.name} does not say whose data it is.",  # type: ignore[attr-defined]
                    hint="Set encryption_subject = EncryptionSubject('person') on the model, "
                    "or subject= on the field.",
                    obj=self,
                    id="security.E012",
                )
            )
        else:
            try:
                model._meta.get_field(spec.field.split("__")[0])
            except FieldDoesNotExist:
                errors.append(
                    checks.Error(
                        f"{model.__name__}: encryption subject path {spec.field!r} is not a database lookup.",
                        obj=self,
                        id="security.E013",
                    )
                )
        return errors

    # --- reading
    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Sealed | None:
        if value is None:
            return None
        return Sealed(value)

    def open(self, instance: models.Model, sealed: Sealed) -> Any:
        if sealed.erased:
            return ERASED
        plain = crypto.decrypt(sealed.token, place=self.place(instance))
        if plain is ERASED:
            sealed.erased = True
            return ERASED
        value = self.from_bytes(plain)  # type: ignore[arg-type]
        instance.__dict__[self.attname] = value  # type: ignore[attr-defined]
        return value

    # --- writing
    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        raw = model_instance.__dict__.get(self.attname)  # type: ignore[attr-defined]
        if raw is None:
            return None
        if raw.__class__ is Sealed:
            # Never decrypted, so unchanged: write the stored token back as it is.
            return _Ciphertext(raw.token)
        if raw is ERASED:
            raise EncryptedFieldError(f"{self.name} was erased; assign a new value or None.")  # type: ignore[attr-defined]
        token = crypto.encrypt(
            self.to_bytes(raw), subject=self.subject_for(model_instance), place=self.place(model_instance)
        )
        return _Ciphertext(token)

    def get_prep_value(self, value: Any) -> Any:
        return value

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if value is None or isinstance(value, _Ciphertext):
            return None if value is None else str(value)
        raise EncryptedFieldError(
            f"Encrypted field {self.name!r} can only be written by Model.save() or bulk_create() "  # type: ignore[attr-defined]
            "(QuerySet.update() and bulk_update() would store it unencrypted), and cannot be searched."
        )

    def get_db_prep_save(self, value: Any, connection: Any) -> Any:
        return self.get_db_prep_value(value, connection)

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)  # type: ignore[misc]
        if lookup_name == "exact":
            return _EncryptedExact
        raise EncryptedFieldError(
            f"Encrypted field {self.name!r} does not support the {lookup_name!r} lookup; "  # type: ignore[attr-defined]
            "filter on its blind index instead."
        )

    def get_transform(self, lookup_name: str) -> Any:
        return None

    def to_python(self, value: Any) -> Any:
        if value is ERASED or value.__class__ is Sealed:
            return value
        return super().to_python(value)  # type: ignore[misc]

    def run_validators(self, value: Any) -> None:
        if value is ERASED:
            return
        super().run_validators(value)  # type: ignore[misc]

    def validate(self, value: Any, model_instance: Any) -> None:
        if value is ERASED:
            return
        super().validate(value, model_instance)  # type: ignore[misc]

    def value_to_string(self, obj: Any) -> str:
        value = self.value_from_object(obj)  # type: ignore[attr-defined]
        return "" if value is None else str(value)


class EncryptedTextField(EncryptedMixin, models.TextField):
    def to_bytes(self, value: Any) -> bytes:
        return str(value).encode("utf-8")

    def from_bytes(self, data: bytes) -> str:
        return data.decode("utf-8")


class EncryptedJSONField(EncryptedMixin, models.JSONField):
    def to_bytes(self, value: Any) -> bytes:
        return json.dumps(value, cls=self.encoder, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def from_bytes(self, data: bytes) -> Any:
        return json.loads(data.decode("utf-8"), cls=self.decoder)

    def to_python(self, value: Any) -> Any:
        return value


class EncryptedDateField(EncryptedMixin, models.DateField):
    def contribute_to_class(self, cls: Any, name: str, **kwargs: Any) -> None:
        # Skip DateField's get_next_by_FOO: ordering by ciphertext means nothing.
        models.Field.contribute_to_class(self, cls, name, **kwargs)

    def to_bytes(self, value: Any) -> bytes:
        parsed = models.DateField.to_python(self, value)
        return parsed.isoformat().encode("ascii")

    def from_bytes(self, data: bytes) -> datetime.date:
        return datetime.date.fromisoformat(data.decode("ascii"))

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        return EncryptedMixin.pre_save(self, model_instance, add)


class EncryptedBinaryField(EncryptedMixin, models.BinaryField):
    def to_bytes(self, value: Any) -> bytes:
        return bytes(value)

    def from_bytes(self, data: bytes) -> bytes:
        return data


# --- Files ---------------------------------------------------------------------------------


class FileErased(crypto.DecryptionError):
    """The file's data subject was shredded: its contents are gone for good."""


class EncryptedFieldFile(FieldFile):
    """A file whose bytes on storage are encrypted (bound to the row); reads decrypt."""

    def _place(self) -> str:
        return self.field.place(self.instance) + "|file"

    def save(self, name: str, content: Any, save: bool = True) -> None:
        from django.conf import settings

        if hasattr(content, "seek"):
            content.seek(0)
        data = content.read()
        if isinstance(data, str):
            data = data.encode("utf-8")
        limit = int(getattr(settings, "FIELD_ENCRYPTION_MAX_FILE_BYTES", 25 * 1024 * 1024))
        if len(data) > limit:
            raise EncryptedFieldError(f"Files larger than {limit} bytes cannot be stored encrypted.")
        blob = crypto.encrypt_bytes_blob(
            data, subject=self.field.subject_for(self.instance), place=self._place()
        )
        super().save(name, ContentFile(blob), save)

    def read_decrypted(self) -> bytes | crypto._Erased:
        """The plaintext bytes, or :data:`ERASED` once the subject was shredded."""
        self._require_file()
        with self.storage.open(self.name, "rb") as stored:
            blob = stored.read()
        return crypto.decrypt_bytes_blob(blob, place=self._place())

    @property
    def erased(self) -> bool:
        return bool(self.name) and self.read_decrypted() is ERASED

    def _get_file(self) -> File:
        if getattr(self, "_file", None) is None:
            plain = self.read_decrypted()
            if plain is ERASED:
                raise FileErased(f"{self.name} was erased (its data subject was shredded).")
            self._file = File(io.BytesIO(plain), name=self.name)  # type: ignore[arg-type]
        return self._file

    def _set_file(self, file: Any) -> None:
        self._file = file

    def _del_file(self) -> None:
        del self._file

    file = property(_get_file, _set_file, _del_file)

    def open(self, mode: str = "rb") -> EncryptedFieldFile:
        self._require_file()
        if getattr(self, "_file", None) is None or self._file.closed:
            self._file = None
            self._get_file()
        else:
            self._file.seek(0)
        return self


class EncryptedFileField(EncryptedMixin, models.FileField):
    """Stores the file name in clear and the file's bytes encrypted on storage."""

    attr_class = EncryptedFieldFile
    descriptor_class = models.FileField.descriptor_class

    def get_internal_type(self) -> str:
        return "FileField"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return value

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        return models.FileField.pre_save(self, model_instance, add)

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        return models.FileField.get_db_prep_value(self, value, connection, prepared)

    def get_db_prep_save(self, value: Any, connection: Any) -> Any:
        return models.FileField.get_db_prep_save(self, value, connection)

    def get_prep_value(self, value: Any) -> Any:
        return models.FileField.get_prep_value(self, value)

    def to_python(self, value: Any) -> Any:
        return value

    def get_lookup(self, lookup_name: str) -> Any:
        return models.FileField.get_lookup(self, lookup_name)

    def get_transform(self, lookup_name: str) -> Any:
        return models.FileField.get_transform(self, lookup_name)


# --- Blind indexes -------------------------------------------------------------------------

_blind_index_models: list[type[models.Model]] = []


class _Matches(Exact):
    """``filter(email_bidx__matches="Ann@Example.com ")``: hashes the right-hand side."""

    lookup_name = "matches"

    def get_prep_lookup(self) -> Any:
        return blind_index(self.lhs.output_field.kind, self.rhs)

    def get_rhs_op(self, connection: Any, rhs: Any) -> str:
        return connection.operators["exact"] % rhs

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        if self.rhs is None:
            return "1 = 0", []
        return super().as_sql(compiler, connection)


class BlindIndexField(models.CharField):
    """HMAC-SHA256 of the normalised ``source`` value, kept in sync on every save."""

    def __init__(self, *args: Any, source: str, kind: str, **kwargs: Any) -> None:
        if kind not in NORMALISERS:
            raise ValueError(f"Unknown blind index kind {kind!r}; known: {sorted(NORMALISERS)}")
        self.source = source
        self.kind = kind
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault("null", True)
        kwargs.setdefault("blank", True)
        kwargs.setdefault("editable", False)
        kwargs.setdefault("db_index", True)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["source"] = self.source
        kwargs["kind"] = self.kind
        for key, default in (
            ("max_length", 64),
            ("null", True),
            ("blank", True),
            ("editable", False),
            ("db_index", True),
        ):
            if kwargs.get(key) == default:
                kwargs.pop(key)
        return name, path, args, kwargs

    def contribute_to_class(self, cls: Any, name: str, **kwargs: Any) -> None:
        super().contribute_to_class(cls, name, **kwargs)
        if not cls._meta.abstract and cls not in _blind_index_models:
            _blind_index_models.append(cls)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors = super().check(**kwargs)
        try:
            self.model._meta.get_field(self.source)
        except FieldDoesNotExist:
            errors.append(
                checks.Error(
                    f"BlindIndexField source {self.source!r} is not a field.", obj=self, id="security.E020"
                )
            )
        return errors

    def source_field(self) -> models.Field:
        return self.model._meta.get_field(self.source)  # type: ignore[return-value]

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        source = self.source_field()
        data = model_instance.__dict__
        current = data.get(self.attname)
        if source.attname not in data:
            return current  # source deferred and not loaded: unchanged
        raw = data[source.attname]
        if raw.__class__ is Sealed:
            return current  # never decrypted: unchanged
        digest = None if raw is None or raw is ERASED else blind_index(self.kind, raw)
        data[self.attname] = digest
        return digest

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return None if value is None else BlindIndexDigest(value)


BlindIndexField.register_lookup(_Matches)


def blind_index_fields(model: type[models.Model]) -> list[BlindIndexField]:
    return [f for f in model._meta.concrete_fields if isinstance(f, BlindIndexField)]


def clear_blind_indexes_for(subject: Subject) -> int:
    """Null every blind index computed from ``subject``'s values; returns rows touched."""
    touched = 0
    for model in list(_blind_index_models):
        by_path: dict[str, list[str]] = {}
        for bidx in blind_index_fields(model):
            source = bidx.source_field()
            spec = source.subject_spec() if isinstance(source, EncryptedMixin) else None
            if spec is not None and spec.kind == subject.kind:
                by_path.setdefault(spec.field, []).append(bidx.attname)
        for path, attnames in by_path.items():
            touched += model._base_manager.filter(**{path: subject.id}).update(**dict.fromkeys(attnames))
    return touched


def check_update_fields(sender: type[models.Model], update_fields: Any = None, **kwargs: Any) -> None:
    """``pre_save`` receiver: saving a source with ``update_fields`` must include its blind index."""
    if not update_fields or sender not in _blind_index_models:
        return
    for bidx in blind_index_fields(sender):
        if bidx.source in update_fields and bidx.name not in update_fields:
            raise EncryptedFieldError(
                f"save(update_fields=...) includes {bidx.source!r} but not its blind index {bidx.name!r}."
            )
