"""Glue between django-axes and allauth's email sign-in form."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.models import normalize_email


def username_from_request(request: HttpRequest, credentials: dict[str, Any] | None) -> str:
    """The email being tried, normalised, so lockouts key on account + IP."""
    credentials = credentials or {}
    raw = credentials.get("email") or credentials.get("username")
    if not raw and request is not None and request.method == "POST":
        raw = request.POST.get("login", "")
    return normalize_email(str(raw or ""))
