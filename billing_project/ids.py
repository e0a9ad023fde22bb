"""Opaque, time-ordered ids with a resource prefix: `cus_01jd3k...` (ULID body)."""

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def new_id(prefix: str) -> str:
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def id_factory(prefix: str):
    """A callable for `CharField(default=...)` that migrations can serialise."""
    return _IdFactory(prefix)


class _IdFactory:
    def __init__(self, prefix: str):
        self.prefix = prefix

    def __call__(self) -> str:
        return new_id(self.prefix)

    def deconstruct(self):
        return ("billing_project.ids._IdFactory", (self.prefix,), {})

    def __eq__(self, other):
        return isinstance(other, _IdFactory) and other.prefix == self.prefix

    def __hash__(self):
        return hash(self.prefix)
