"""The client's address: the one place that reads ``REMOTE_ADDR`` and ``X-Forwarded-For``.

Every consumer (sign-in lockouts, allauth's rate limits, the audit context, fraud rules, API
key last use, API throttling) calls :func:`client_ip`, so they all agree on who is calling.

The rule, with ``TRUSTED_PROXY_COUNT = N``:

- ``N = 0`` (the default): ``X-Forwarded-For`` is ignored; the client is ``REMOTE_ADDR``.
- ``N > 0``: each of our N proxies appends the address it received the request from, so the
  client is the N-th entry from the right of ``X-Forwarded-For``. Entries further left were
  sent by the client itself and are never trusted (the left-most one is whatever an attacker
  wrote).
- Fewer than N entries, or an entry in the right-most N that is not an IP address: the header
  did not come through our proxies as configured, so nothing in it is trusted and the client
  is ``REMOTE_ADDR`` (the nearest address we can vouch for).

Addresses come back normalised (``ipaddress``'s compressed form, IPv4-mapped IPv6 as IPv4, no
zone or port), or ``None`` when even ``REMOTE_ADDR`` is not an address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, cast

from django.conf import settings
from django.http import HttpRequest


def normalise_ip(value: object) -> str | None:
    """``value`` as a canonical IP address string, or ``None`` when it is not one.

    Accepts what proxies write: surrounding spaces, ``1.2.3.4:5678``, ``[2001:db8::1]:443``.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.startswith("["):  # [v6] or [v6]:port
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    text = text.split("%", 1)[0]  # an IPv6 zone names a local interface, not a client
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.compressed


def trusted_proxy_count() -> int:
    return int(getattr(settings, "TRUSTED_PROXY_COUNT", 0) or 0)


def client_ip_from_meta(meta: Mapping[str, Any]) -> str | None:
    """The client address from a WSGI environ or ``request.META`` (see the module's rule)."""
    remote = normalise_ip(meta.get("REMOTE_ADDR"))
    proxies = trusted_proxy_count()
    if proxies <= 0:
        return remote
    forwarded = meta.get("HTTP_X_FORWARDED_FOR")
    if not isinstance(forwarded, str) or not forwarded.strip():
        return remote
    hops = forwarded.split(",")
    if len(hops) < proxies:
        return remote
    trusted = [normalise_ip(hop) for hop in hops[-proxies:]]
    if any(hop is None for hop in trusted):
        return remote
    return trusted[0]


_CACHE_ATTRIBUTE = "_security_client_ip"
_UNSET = object()


def client_ip(request: HttpRequest) -> str | None:
    """The address of the client that sent ``request`` (the module's rule).

    Worked out once per request and kept on it: the audit context, the lockouts, the rate
    limits and the API key's last use all ask for the same request.
    """
    cached = getattr(request, _CACHE_ATTRIBUTE, _UNSET)
    if cached is _UNSET:
        cached = client_ip_from_meta(request.META)
        setattr(request, _CACHE_ATTRIBUTE, cached)
    return cast("str | None", cached)
