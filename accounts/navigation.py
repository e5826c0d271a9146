"""Navigation entries by role. Apps register their own entries from ``ready()``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    section: str  # "merchant" or "staff"
    order: int
    permission: str | None = None  # staff entries: the permission needed
    staff_roles: tuple[str, ...] = ()  # staff entries: roles that see it (all staff if empty)
    merchant_action: str | None = None  # merchant entries: the role-table action needed (all if None)


_items: dict[str, NavItem] = {}


def register(item: NavItem) -> None:
    _items[item.url_name] = item


def items_for(section: str) -> list[NavItem]:
    return sorted((i for i in _items.values() if i.section == section), key=lambda i: i.order)
