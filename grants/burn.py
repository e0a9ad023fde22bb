"""Credit blocks through the burn-down engine (`grants.engine`): no ORM writes here.

Every split of an amount over blocks comes from `engine.run`, so the credit ledger and
entitlements share one engine:

* a deduction at instant ``at`` is a run over ``[at, at + 1µs)`` resumed from a snapshot of the
  current block balances and debt, with the deducted amount as the segment's usage;
* paying off debt is the engine's activation rule: blocks that became effective since the
  last settlement open (in time order, then burn order) and pay outstanding overage.

Block `filters` (Orb block filters) become the engine's `eligible` usage classes: priced usage
is one class (`PRICED`) that a filtered block covers only when its filters match; manual
decrements ignore filters (every block is eligible).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from grants import engine

ZERO = Decimal(0)
TICK = timedelta(microseconds=1)
PRICED = "priced"


@dataclass(frozen=True)
class BlockState:
    """What the engine needs of a credit block (built from `CreditBlock` or a test)."""

    id: str
    initial_amount: Decimal
    balance: Decimal
    effective_at: datetime
    created_at: datetime
    priority: int = 1
    expires_at: datetime | None = None
    cost_basis: Decimal | None = None
    filters: tuple = ()

    @classmethod
    def of(cls, block) -> BlockState:
        return cls(id=block.id, initial_amount=block.initial_amount, balance=block.balance,
                   effective_at=block.effective_at, created_at=block.created_at,
                   priority=block.priority, expires_at=block.expires_at,
                   cost_basis=block.per_unit_cost_basis,
                   filters=tuple(_freeze(f) for f in block.filters or ()))

    def is_active_at(self, at: datetime) -> bool:
        return self.effective_at <= at and (self.expires_at is None or at < self.expires_at)


def _freeze(item: Mapping) -> tuple:
    return (item.get("field"), item.get("operator"), tuple(item.get("values") or ()))


@dataclass(frozen=True)
class UsageContext:
    """Attributes of priced usage that block filters match on (`None`: a manual decrement)."""

    price_id: str | None = None
    meter_slug: str | None = None
    item_id: str | None = None

    def value(self, field: str) -> str | None:
        return getattr(self, field, None)


def filters_match(filters: Iterable[tuple], usage: UsageContext) -> bool:
    """Orb block filters: every filter must hold (`includes`: value listed; `excludes`: not)."""
    for field, operator, values in filters:
        value = usage.value(field)
        listed = value is not None and value in values
        if (operator == "includes") != listed:
            return False
    return True


def _grant(block: BlockState, usage: UsageContext | None, *, amount: Decimal | None = None,
           effective_at: datetime | None = None) -> engine.Grant:
    eligible = None
    if usage is not None and block.filters:
        eligible = frozenset({PRICED}) if filters_match(block.filters, usage) else frozenset()
    return engine.Grant(
        id=block.id, amount=amount if amount is not None else block.initial_amount,
        effective_at=effective_at or block.effective_at, created_at=block.created_at,
        priority=block.priority, expires_at=block.expires_at, cost_basis=block.cost_basis,
        eligible=eligible,
    )


@dataclass(frozen=True)
class Deduction:
    """How an amount splits: `burned` per block in burn order, and the uncovered `overage`."""

    burned: list[tuple[str, Decimal]]
    overage: Decimal


def plan_deduction(*, blocks: Iterable[BlockState], debt: Decimal, amount: Decimal,
                   at: datetime, usage: UsageContext | None = None) -> Deduction:
    """Burn `amount` at instant `at` from the blocks active then; pure."""
    active = [b for b in blocks if b.is_active_at(at)]
    if usage is None or not any(b.filters for b in active):
        return _greedy_deduction(active, amount)
    return _engine_deduction(active, debt, amount, at, usage)


def _greedy_deduction(active: list[BlockState], amount: Decimal) -> Deduction:
    """The engine's answer when every active block takes the usage (a manual decrement, or no
    block filters): one segment of `[at, at + 1µs)` resumed from the current balances, where
    nothing opens, expires or refills, burns down the blocks in `burn_order_key` order, each
    giving `min(balance, what is left)`; the rest is overage. `_engine_deduction` is the
    reference (tests/grants/test_burn_fast_path.py compares both)."""
    if isinstance(amount, int) and not isinstance(amount, bool):
        amount = Decimal(amount)
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
        raise ValueError(f"usage must be a finite Decimal >= 0, got {amount!r}")
    remaining = amount
    burned = []
    for block in sorted(active, key=burn_order_key):
        if remaining == 0:
            break
        take = min(block.balance, remaining)
        if take:
            remaining -= take
            burned.append((block.id, take))
    return Deduction(burned=burned, overage=remaining)


def _engine_deduction(active: list[BlockState], debt: Decimal, amount: Decimal, at: datetime,
                      usage: UsageContext | None) -> Deduction:
    grants = [_grant(b, usage) for b in active]
    snapshot = engine.Snapshot(at=at, balances={b.id: b.balance for b in active}, overage=debt)
    usage_class = PRICED if usage is not None else None
    result = engine.run(grants=grants, start=at, end=at + TICK, snapshot=snapshot,
                        usage=lambda start, end: {usage_class: amount} if start == at else ZERO)
    segment = result.segments[0]
    order = {g.id: engine.burn_order_key(g) for g in grants}
    burned = sorted(((gid, take) for gid, take in segment.grant_usages.items() if take),
                    key=lambda item: order[item[0]])
    return Deduction(burned=burned, overage=segment.overage)


def plan_payoff(*, blocks: Iterable[BlockState], debt: Decimal, since: datetime | None,
                at: datetime) -> dict[str, Decimal]:
    """Debt paid by blocks that opened in `(since, at]` (or every effective block with a
    balance when `since` is None): the engine's activation payoff, in time then burn order."""
    if debt <= 0:
        return {}
    openers = [b for b in blocks if b.balance > 0 and b.effective_at <= at
               and (since is None or b.effective_at > since or b.created_at > since)]
    if not openers:
        return {}
    # A backdated block opens when it was recorded; nothing was owed to it before then.
    opens = {b.id: max(b.effective_at, b.created_at) if since is not None else
             b.effective_at for b in openers}
    start = min(opens.values()) - TICK
    grants = [_grant(b, None, amount=b.balance, effective_at=opens[b.id]) for b in openers
              if b.expires_at is None or b.expires_at > opens[b.id]]
    if not grants:
        return {}
    snapshot = engine.Snapshot(at=start, balances={}, overage=debt)
    result = engine.run(grants=grants, start=start, end=at, snapshot=snapshot,
                        usage=lambda s, e: ZERO)
    paid: dict[str, Decimal] = {}
    for transition in result.transitions:
        for grant_id, amount in transition.overage_paid.items():
            paid[grant_id] = paid.get(grant_id, ZERO) + amount
    return paid


def burn_order_key(block: BlockState) -> tuple:
    """The engine's burn-down order for a block (lowest first): `engine.burn_order_key` of
    its grant, computed without building one (a test checks both agree)."""
    return (block.priority, block.expires_at or engine._END_OF_TIME,
            block.cost_basis if block.cost_basis is not None else ZERO, block.created_at,
            block.id)
