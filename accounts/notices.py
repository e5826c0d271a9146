"""Platform-wide notices for administrators, contributed by apps without importing them.

An app registers a callable returning a list of :class:`Notice`; the admin index
and the staff home page show whatever is current.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Notice:
    level: str  # "warning" or "error"
    title: str
    body: str


_providers: dict[str, Callable[[], list[Notice]]] = {}


def register(name: str, provider: Callable[[], list[Notice]]) -> None:
    _providers[name] = provider


def admin_notices() -> list[Notice]:
    found: list[Notice] = []
    for provider in _providers.values():
        found.extend(provider())
    return found
