"""Hooks that refuse changes to usage already billed (API.md §2: 409 inside an issued invoice).

Invoicing registers a checker at startup:

    register_lock_checker(fn)   # fn(*, customer_id: str | None, start, end) -> str | None

`customer_id=None` means "any customer". The checker returns a reason when usage of that
customer in [start, end) is part of an issued invoice, else None.
"""

from collections.abc import Callable
from datetime import datetime

from billing_project.errors import Conflict

LockChecker = Callable[..., str | None]
_checkers: list[LockChecker] = []


def register_lock_checker(checker: LockChecker) -> LockChecker:
    if checker not in _checkers:
        _checkers.append(checker)
    return checker


def unregister_lock_checker(checker: LockChecker) -> None:
    if checker in _checkers:
        _checkers.remove(checker)


def ensure_usage_unlocked(*, customer_id: str | None, start: datetime, end: datetime) -> None:
    """Conflict (409, `usage_locked`) when a registered checker says the usage is billed."""
    for checker in list(_checkers):
        reason = checker(customer_id=customer_id, start=start, end=end)
        if reason:
            raise Conflict(reason, code="usage_locked")
