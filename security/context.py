"""Who is making the current request, for audit events written deep in services.

The middleware stores the client IP and user agent in a context variable for the
duration of a request; Celery tasks and commands run with an empty context.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse

from security.client_ip import client_ip

__all__ = ["RequestContext", "RequestContextMiddleware", "bind", "current"]


@dataclass(frozen=True)
class RequestContext:
    ip: str | None = None
    user_agent: str = ""
    request_id: str = ""


_EMPTY = RequestContext()
_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "fp_request_context", default=None
)


def current() -> RequestContext:
    return _current.get() or _EMPTY


@contextmanager
def bind(ctx: RequestContext) -> Iterator[RequestContext]:
    """Make ``ctx`` the current request context inside the ``with`` block."""
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


class RequestContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        ctx = RequestContext(
            ip=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
            request_id=request.META.get("HTTP_X_REQUEST_ID", "")[:64],
        )
        with bind(ctx):
            return self.get_response(request)
