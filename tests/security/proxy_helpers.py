"""Requests as they arrive behind the one reverse proxy of deploy/compose.yaml.

The proxy connects from ``PROXY`` and appends the address it received the request from to
``X-Forwarded-For``; whatever the client sent in that header comes first, so the left-most entry
is the client's to choose.
"""

from __future__ import annotations

PROXY = "172.18.0.5"  # the proxy container, as gunicorn sees it
FORGED = "192.0.2.66"  # what an attacker writes in X-Forwarded-For


def via_proxy(client_address: str, *, forged: str | None = FORGED) -> dict[str, str]:
    """``Client`` keyword arguments for a request from ``client_address`` through the proxy."""
    forwarded = f"{forged}, {client_address}" if forged else client_address
    return {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": forwarded}
