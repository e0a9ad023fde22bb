"""Opaque, time-ordered ids with a resource prefix: `cus_01jd3k...` (ULID body)."""

import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case

# Random bytes come from os.urandom 4 KB at a time: a call per id is a system call that
# releases the GIL, and with many threads (a worker writing ledger entries) each release hands
# the GIL away and waits to get it back. A forked child starts with an empty pool (parent and
# child never share bytes) and a new lock (another thread may have held it at the fork).
_POOL_SIZE = 4096
_pool = {"bytes": b"", "at": 0}
_pool_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _pool_lock
    _pool_lock = threading.Lock()
    _pool.update(bytes=b"", at=0)


os.register_at_fork(after_in_child=_after_fork_in_child)


def _random_80_bits() -> int:
    with _pool_lock:
        at = _pool["at"]
        if at + 10 > len(_pool["bytes"]):
            _pool["bytes"], at = os.urandom(_POOL_SIZE), 0
        _pool["at"] = at + 10
        return int.from_bytes(_pool["bytes"][at:at + 10], "big")


def new_id(prefix: str) -> str:
    value = (int(time.time() * 1000) << 80) | _random_80_bits()
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
