"""A short middleware path for machine-to-machine endpoints (the gateways' webhooks).

Stripe and Braintree POST signed JSON without cookies, sessions or CSRF tokens, and
may send hundreds of events a second. Everything a browser request needs after
this point in ``MIDDLEWARE`` (sessions, CSRF, authentication, the second factor,
messages, allauth, session policy, axes) only does work for a signed-in person, so
for the URL names in ``LEAN_URL_NAMES`` this middleware calls the view itself and
skips the rest of the chain.

What still runs for those URLs is whatever sits *above* this middleware: the
security headers (HSTS, nosniff, referrer and opener policies, the TLS redirect),
X-Frame-Options, the Content-Security-Policy, the request context used by audit
events, and the card-number guard. Views on the lean path must not use
``request.user`` or ``request.session`` (they do not exist there), must be
``csrf_exempt`` and must authenticate the request themselves (the webhooks verify
the gateway's signature). Any other path, and any path under a lean prefix that
does not resolve to a lean URL name, goes through the full chain unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve


class LeanPathMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.names: frozenset[str] = frozenset(getattr(settings, "LEAN_URL_NAMES", ()))
        self.prefixes: tuple[str, ...] = tuple(getattr(settings, "LEAN_PATH_PREFIXES", ()))

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self.prefixes and request.path_info.startswith(self.prefixes):
            # The body-limit middleware above may already have resolved it (a large body).
            match = request.resolver_match
            if match is None:
                try:
                    match = resolve(request.path_info)
                except Resolver404:
                    match = None
            if match is not None and match.view_name in self.names:
                request.resolver_match = match
                # No ``SELECT 1`` health check before the one INSERT: if a kept connection has
                # broken, that INSERT fails, the gateway gets a 500 and redelivers, and Django
                # closes the connection at the end of the request, so the retry reconnects.
                for conn in connections.all(initialized_only=True):
                    conn.health_check_done = True
                response = match.func(request, *match.args, **match.kwargs)
                if response is None:  # pragma: no cover - a view bug, as Django itself reports it
                    raise ValueError(f"The view {match.view_name} returned None.")
                return response
        return self.get_response(request)
