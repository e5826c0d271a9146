"""Encryption keys: which KEK wraps how many data keys, and rotation with a progress bar."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.otp import require_recent_otp
from security import selectors
from security.errors import ApplicationError
from security.keyring import KeyringError, get_keyring
from security.models import KeyRotation
from security.rotation import rotation_start

PERM = "security.manage_keys"


@permission_required(PERM, raise_exception=True)
@require_GET
def key_management(request: HttpRequest) -> HttpResponse:
    keyring = get_keyring()
    counts = selectors.data_key_counts(active_kek_id=keyring.active_id)
    rotations = selectors.key_rotations_recent()
    running = next((r for r in rotations if r.status == KeyRotation.Status.RUNNING), None)
    return render(
        request,
        "compliance/keys.html",
        {
            "active_id": keyring.active_id,
            "kek_ids": keyring.ids,
            "by_kek": counts.by_kek,
            "rotations": rotations,
            "running": running,
            "behind": counts.behind,
            "shredded": counts.shredded,
        },
    )


@permission_required(PERM, raise_exception=True)
@require_POST
@require_recent_otp(minutes=5)
def key_rotation_start(request: HttpRequest) -> HttpResponse:
    from security.tasks import rotate_data_keys

    try:
        run = rotation_start(actor=request.user)
    except (ApplicationError, KeyringError) as exc:
        messages.error(request, getattr(exc, "message", str(exc)))
        return redirect("key_management")
    label = f"{request.user.email} (rotation {run.public_id})"
    transaction.on_commit(lambda: rotate_data_keys.delay(label))
    messages.success(
        request, f"Rotation to key {run.target_kek_id!r} started: {run.total} data keys to re-wrap."
    )
    return redirect("key_management")


@permission_required(PERM, raise_exception=True)
@require_GET
def key_rotation_progress(request: HttpRequest, public_id: str) -> JsonResponse:
    run = selectors.key_rotation_by_public_id(public_id)
    if run is None:
        raise Http404("No such key rotation.")
    status = {"running": "running", "completed": "done"}.get(run.status, run.status)
    return JsonResponse(
        {
            "status": status,
            "done": run.done,
            "total": run.total,
            "message": f"{run.done} of {run.total} data keys re-wrapped ({run.percent}%)",
        }
    )
