"""Panels on the merchant overview page, contributed by apps without accounts importing them.

An app registers a callable from its ``AppConfig.ready()``::

    from accounts import overview
    overview.register("payments.charts", render_charts, order=10)

``render(request, merchant)`` returns HTML (already escaped, e.g. from
``render_to_string``) or ``None`` to show nothing for this merchant or role.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.utils.safestring import SafeString


@dataclass(frozen=True)
class Panel:
    name: str
    order: int
    render: Callable[[HttpRequest, Any], SafeString | str | None]


_panels: dict[str, Panel] = {}


def register(
    name: str, render: Callable[[HttpRequest, Any], SafeString | str | None], *, order: int = 50
) -> None:
    _panels[name] = Panel(name, order, render)


def panels_for(request: HttpRequest, merchant: Any) -> list[SafeString | str]:
    rendered = []
    for panel in sorted(_panels.values(), key=lambda p: (p.order, p.name)):
        html = panel.render(request, merchant)
        if html:
            rendered.append(html)
    return rendered
