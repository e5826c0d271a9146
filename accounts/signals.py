"""Audit receivers for sign-in events raised by Django, allauth and axes."""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from accounts.axes import username_from_request
from security import audit


@receiver(user_logged_in, dispatch_uid="accounts.audit_password_ok")
def _password_ok(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    audit.record(actor=user, action="auth.password_accepted", target=user)


@receiver(user_logged_out, dispatch_uid="accounts.audit_signed_out")
def _signed_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        audit.record(actor=user, action="auth.signed_out", target=user)


@receiver(user_login_failed, dispatch_uid="accounts.audit_login_failed")
def _login_failed(sender: Any, credentials: dict, request: Any = None, **kwargs: Any) -> None:
    email = username_from_request(request, credentials)
    user = get_user_model().objects.filter(email=email).first() if email else None
    # The attempted address is personal data: record the account it matched, if any.
    audit.record(
        actor=None,
        action="auth.sign_in_failed",
        target=user,
        details={"known_account": user is not None},
    )


@receiver(user_locked_out, dispatch_uid="accounts.audit_locked_out")
def _locked_out(sender: Any, request: Any, username: str, ip_address: str, **kwargs: Any) -> None:
    user = get_user_model().objects.filter(email=username).first() if username else None
    audit.record(
        actor=None,
        action="auth.locked_out",
        target=user,
        details={"known_account": user is not None},
    )
