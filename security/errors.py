"""One domain error type for every app, and the two places that render it.

Services raise :class:`ApplicationError` with a message a user can act on.
:func:`api_exception_handler` turns it into a JSON 4xx for the API;
:func:`error_response` / :func:`add_error_message` do the same for pages.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response


class ApplicationError(Exception):
    """A failure the user caused or can fix. Nothing was changed."""

    status_code = 400
    code = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status_code:
            self.status_code = status_code
        self.extra = extra or {}


class NotFound(ApplicationError):
    status_code = 404
    code = "not_found"


class PermissionDeniedError(ApplicationError):
    status_code = 403
    code = "permission_denied"


class Conflict(ApplicationError):
    status_code = 409
    code = "conflict"


class IllegalTransition(ApplicationError):
    status_code = 409
    code = "illegal_transition"


def _code_for(exc: drf_exceptions.APIException) -> str:
    codes = exc.get_codes()
    if isinstance(codes, str):
        return codes
    return "invalid_request" if isinstance(exc, drf_exceptions.ValidationError) else "error"


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every API error is JSON: ``{"error": {"code", "message", ...}}``."""
    if isinstance(exc, ApplicationError):
        body = {"error": {"code": exc.code, "message": exc.message, **exc.extra}}
        return Response(body, status=exc.status_code)
    # Imported here: rest_framework.views loads the authentication classes, which import us.
    from rest_framework.views import exception_handler as drf_default_handler

    response = drf_default_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf_exceptions.APIException):
        if isinstance(exc, drf_exceptions.ValidationError):
            body = {
                "error": {
                    "code": "invalid_request",
                    "message": "Some fields are invalid.",
                    "fields": response.data,
                }
            }
        else:
            detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
            body = {"error": {"code": _code_for(exc), "message": str(detail)}}
        response.data = body
    return response


def add_error_message(request: HttpRequest, exc: ApplicationError) -> None:
    """Show the error's message on the next rendered page."""
    messages.error(request, exc.message)


__all__ = [
    "ApplicationError",
    "Conflict",
    "IllegalTransition",
    "NotFound",
    "PermissionDeniedError",
    "add_error_message",
    "api_exception_handler",
]
