"""``Idempotency-Key`` for the merchant API's POSTs, the way Stripe does it.

* The first request with a key runs and its response (status and body) is stored.
* A retry with the same key and the same request (method, path and body) gets
  the stored response back, with ``Idempotent-Replayed: true``.
* The same key with a different request is refused: 409 ``idempotency_key_reused``.
* While the first request is still running, a retry is refused: 409
  ``idempotency_key_in_use`` (try again shortly).
* Keys belong to one merchant and one caller (API key or user), are unique in
  the database, and are forgotten after 24 hours (``idempotency_records_purge``).

Request validation errors, throttling, retryable gateway errors and crashes are
not stored: nothing was done, so the same key may be used again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import exceptions as drf_exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import ApiKey, Merchant
from payments.models import IdempotencyRecord
from security.errors import ApplicationError, Conflict

log = logging.getLogger("fintech_portal.payments")

HEADER = "Idempotency-Key"
KEY_TTL = timedelta(hours=24)
# A request that has held its key this long is presumed dead (its worker crashed); a retry
# may take the key over, reusing any id it reserved.
ABANDONED_AFTER = timedelta(minutes=5)
_KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


class IdempotencyKeyInUse(Conflict):
    code = "idempotency_key_in_use"


def fingerprint(*, method: str, path: str, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method.upper()} {path}\n{canonical}".encode()).hexdigest()


def principal_for(request: Request) -> str:
    """Whose keys these are: the API key (``key:key_…``) or the signed-in user (``user:usr_…``)."""
    if isinstance(request.auth, ApiKey):
        return f"key:{request.auth.public_id}"
    return f"user:{request.user.public_id}"


def _body_of(request: Request) -> Any:
    data = request.data
    if hasattr(data, "lists"):  # a QueryDict (form or multipart body)
        return {key: values for key, values in data.lists()}
    return data


@dataclass(frozen=True)
class Begun:
    record: IdempotencyRecord
    replay: Response | None = None


def idempotency_begin(
    *,
    merchant: Merchant,
    principal: str,
    key: str,
    method: str,
    path: str,
    request_fingerprint: str,
    now: datetime | None = None,
) -> Begun:
    """Claim ``key`` for this request, or say what to answer instead.

    Returns the claimed record (run the request, then :func:`idempotency_finish`),
    or a record with ``replay`` set (answer with it). Raises
    :class:`IdempotencyKeyReused` or :class:`IdempotencyKeyInUse` (409).
    """
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ApplicationError(
            f"The {HEADER} header must be 1 to 255 printable ASCII characters without spaces.",
            code="invalid_idempotency_key",
        )
    now = now or timezone.now()
    for _ in range(3):
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    merchant=merchant,
                    principal=principal,
                    key=key,
                    method=method.upper()[:8],
                    path=path[:255],
                    fingerprint=request_fingerprint,
                    created_at=now,
                    locked_at=now,
                )
            return Begun(record)
        except IntegrityError:
            pass
        with transaction.atomic():
            existing = (
                IdempotencyRecord.objects.select_for_update()
                .filter(merchant=merchant, principal=principal, key=key)
                .first()
            )
            if existing is None:
                continue  # purged in between: claim it afresh
            if existing.created_at <= now - KEY_TTL:
                existing.delete()
                continue
            if existing.fingerprint != request_fingerprint:
                raise IdempotencyKeyReused(
                    f"This {HEADER} was already used for a different request "
                    f"({existing.method} {existing.path}, other parameters). Use a new key for a new request."
                )
            if existing.status == IdempotencyRecord.Status.COMPLETE:
                response = Response(existing.response_body, status=existing.response_status or 200)
                response["Idempotent-Replayed"] = "true"
                return Begun(existing, replay=response)
            if existing.locked_at > now - ABANDONED_AFTER:
                raise IdempotencyKeyInUse(
                    f"A request with this {HEADER} is still being processed. Retry in a few seconds."
                )
            existing.locked_at = now
            existing.save(update_fields=["locked_at"])
            log.warning("idempotency: taking over an abandoned key for %s", existing.path)
            return Begun(existing)
    raise IdempotencyKeyInUse(f"This {HEADER} is busy; retry in a few seconds.")


def idempotency_reserve_id(*, record: IdempotencyRecord, make_id: Callable[[], str]) -> str:
    """An id for the object this request creates, the same on every retry of it."""
    if not record.resource_id:
        record.resource_id = make_id()
        IdempotencyRecord.objects.filter(pk=record.pk).update(resource_id=record.resource_id)
    return record.resource_id


def idempotency_finish(*, record: IdempotencyRecord, status: int, body: Any) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        status=IdempotencyRecord.Status.COMPLETE,
        response_status=status,
        response_body=body,
        completed_at=timezone.now(),
    )


def idempotency_release(*, record: IdempotencyRecord) -> None:
    """Forget the key: the request did nothing, so the key may be used again."""
    IdempotencyRecord.objects.filter(pk=record.pk, status=IdempotencyRecord.Status.IN_PROGRESS).delete()


def idempotency_records_purge(*, now: datetime | None = None, batch: int = 5000) -> int:
    """Delete keys older than 24 hours, in batches. Returns how many went."""
    cutoff = (now or timezone.now()) - KEY_TTL
    total = 0
    while True:
        ids = list(
            IdempotencyRecord.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:batch]
        )
        if not ids:
            return total
        deleted, _ = IdempotencyRecord.objects.filter(pk__in=ids).delete()
        total += deleted


def _is_stored(exc: ApplicationError) -> bool:
    """Errors the caller caused after the request started (a refund too large, a link already
    expired) are part of the result; retryable trouble (503) is not."""
    return exc.status_code < 500 or (exc.status_code == 502 and not getattr(exc, "retryable", False))


def run_idempotent(
    request: Request,
    *,
    merchant: Merchant,
    handler: Callable[[IdempotencyRecord | None], Response],
) -> Response:
    """Run ``handler`` under the request's ``Idempotency-Key`` (if any); see the module docstring."""
    key = request.headers.get(HEADER)
    if key is None:
        return handler(None)
    begun = idempotency_begin(
        merchant=merchant,
        principal=principal_for(request),
        key=key,
        method=request.method or "POST",
        path=request.path,
        request_fingerprint=fingerprint(
            method=request.method or "POST", path=request.path, body=_body_of(request)
        ),
    )
    if begun.replay is not None:
        begun.replay[HEADER] = key
        return begun.replay
    record = begun.record
    try:
        response = handler(record)
    except drf_exceptions.ValidationError:
        idempotency_release(record=record)
        raise
    except ApplicationError as exc:
        if not _is_stored(exc):
            idempotency_release(record=record)
            raise
        body = {"error": {"code": exc.code, "message": exc.message, **exc.extra}}
        idempotency_finish(record=record, status=exc.status_code, body=body)
        response = Response(body, status=exc.status_code)
        response[HEADER] = key
        return response
    except BaseException:
        idempotency_release(record=record)
        raise
    idempotency_finish(record=record, status=response.status_code, body=response.data)
    response[HEADER] = key
    return response
