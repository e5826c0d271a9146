"""Public identifiers: a short type prefix and a random, unguessable body."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
BODY_LENGTH = 24


def new_public_id(prefix: str) -> str:
    """Return e.g. ``pay_3kT9...``: never sequential, never reused in practice."""
    if not prefix.isalpha() or not prefix.islower():
        raise ValueError("prefix must be lower-case letters")
    body = "".join(secrets.choice(_ALPHABET) for _ in range(BODY_LENGTH))
    return f"{prefix}_{body}"


def public_id_default(prefix: str):
    """A callable usable as a model field default (migrations serialise it by path)."""
    return _PublicIdFactory(prefix)


class _PublicIdFactory:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self) -> str:
        return new_public_id(self.prefix)

    def deconstruct(self):
        return ("security.ids._PublicIdFactory", (self.prefix,), {})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _PublicIdFactory) and other.prefix == self.prefix

    def __hash__(self) -> int:
        return hash(self.prefix)
