"""The burn-down engine: attributes usage over time to grants in burn-down order.

Pure computation (stdlib only, no ORM), shared by both faces of a ledger:

* Orb-style prepaid credit blocks: decrements burn blocks in order, what no block covers is
  debt (``overage``), and the next increment pays the debt first.
* OpenMeter-style entitlement grants: metered usage burns grants, usage periods end in resets
  with rollover, recurrences refill grants, voids are not retroactive, and overage is paid off
  by grants that become active later in the same period.

Time is split into segments at every instant where something changes (a grant becoming
effective, expiring, being voided or refilled, a reset). All intervals are half-open
``[start, end)``. Within a segment, usage is attributed to the active grants in burn order.

What happens at an instant ``t`` (a :class:`Transition`), in this order:

1. grants whose ``expires_at`` or ``voided_at`` is ``t`` leave with their balance
   (recorded as expired or voided; on a tie it counts as expired);
2. a reset at ``t`` rolls each remaining grant over to
   ``min(max_rollover, max(balance, min_rollover))``, restarts the usage counter, and drops
   the overage unless the reset preserves it;
3. grants with a refill at ``t`` are set back to their amount (no rollover);
4. grants whose ``effective_at`` is ``t`` open with their amount;
5. outstanding overage is paid off, in burn order, by the grants refilled or opened at ``t``;
   at a reset that preserves overage, by every grant the new period opens with.

A run's final state is the state at ``end`` after the transition at ``end``, and its
:class:`Snapshot` resumes a later run from exactly there. Splitting a range at any instant and
resuming from the first run's snapshot gives the same balances, overage, transitions and
per-grant usage as one run, as long as the usage function is additive and all usage is of one
class (with several usage classes competing for the same grants, attribution within a segment
follows a fixed class order, so it depends on where segments are cut; see :func:`run`).

All amounts are ``Decimal`` and all arithmetic is exact: nothing is rounded, no float is
accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise

__all__ = [
    "ANY_USAGE",
    "BurnResult",
    "Grant",
    "Reset",
    "Segment",
    "Snapshot",
    "StaleSnapshotError",
    "Transition",
    "UsageClass",
    "UsageFn",
    "burn_order_key",
    "run",
]

ZERO = Decimal(0)
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)

UsageClass = str | None
ANY_USAGE = "*"
"""Usage class that every grant covers, filtered or not (e.g. Orb's manual decrements)."""
UsageFn = Callable[[datetime, datetime], Decimal | Mapping[UsageClass, Decimal]]


class StaleSnapshotError(ValueError):
    """The snapshot does not match the grants (e.g. a grant was backdated past it)."""


def _check_time(name: str, value: datetime) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def _check_amount(name: str, value: object, *, positive: bool = False) -> Decimal:
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


@dataclass(frozen=True)
class Grant:
    """An amount that usage burns down (an Orb credit block or an OpenMeter grant).

    Active on ``[effective_at, min(expires_at, voided_at))``. ``refills`` are recurrence
    instants at which the balance is set back to ``amount``. ``eligible`` restricts which usage
    classes may burn the grant (``None``: all of them).
    """

    id: str
    amount: Decimal
    effective_at: datetime
    created_at: datetime
    priority: int = 1
    expires_at: datetime | None = None
    voided_at: datetime | None = None
    cost_basis: Decimal | None = None
    min_rollover: Decimal = ZERO
    max_rollover: Decimal | None = None
    refills: tuple[datetime, ...] = ()
    eligible: frozenset[str] | None = None

    def __post_init__(self) -> None:
        _check_amount("amount", self.amount, positive=True)
        _check_amount("min_rollover", self.min_rollover)
        if self.max_rollover is not None:
            _check_amount("max_rollover", self.max_rollover)
        if self.cost_basis is not None:
            _check_amount("cost_basis", self.cost_basis)
        _check_time("effective_at", self.effective_at)
        _check_time("created_at", self.created_at)
        for name in ("expires_at", "voided_at"):
            if getattr(self, name) is not None:
                _check_time(name, getattr(self, name))
        object.__setattr__(self, "refills", tuple(self.refills))
        for instant in self.refills:
            _check_time("refills", instant)
        if self.eligible is not None:
            object.__setattr__(self, "eligible", frozenset(self.eligible))

    @property
    def ends_at(self) -> datetime | None:
        """When the grant stops being active: the earlier of expiry and void."""
        ends = [t for t in (self.expires_at, self.voided_at) if t is not None]
        return min(ends) if ends else None

    @property
    def ends_by_void(self) -> bool:
        """True when the grant's end is a void strictly before its expiry."""
        return self.voided_at is not None and (
            self.expires_at is None or self.voided_at < self.expires_at
        )

    def is_active_at(self, t: datetime) -> bool:
        ends_at = self.ends_at
        return self.effective_at <= t and (ends_at is None or t < ends_at)

    def covers(self, usage_class: UsageClass) -> bool:
        return self.eligible is None or usage_class == ANY_USAGE or usage_class in self.eligible

    def rollover(self, balance: Decimal) -> Decimal:
        """Balance after a reset: ``min(max_rollover, max(balance, min_rollover))``."""
        cap = self.amount if self.max_rollover is None else self.max_rollover
        return min(cap, max(balance, self.min_rollover))


def burn_order_key(grant: Grant) -> tuple:
    """Burn-down order, lowest first: priority, soonest expiry (none last), lower cost basis
    (none counts as 0), earliest created, id."""
    return (
        grant.priority,
        grant.expires_at or _END_OF_TIME,
        grant.cost_basis if grant.cost_basis is not None else ZERO,
        grant.created_at,
        grant.id,
    )


@dataclass(frozen=True)
class Reset:
    """Start of a new usage period at ``at`` (rollover; overage dropped unless preserved)."""

    at: datetime
    preserve_overage: bool = False

    def __post_init__(self) -> None:
        _check_time("at", self.at)


@dataclass(frozen=True)
class Snapshot:
    """The engine's state at ``at``, after the transition at ``at``: enough to resume a run.

    ``balances`` holds every grant active at ``at`` (zero balances included). ``period_start``
    and ``period_usage`` carry the usage counted since the last reset (``None``: since ``at``).
    """

    at: datetime
    balances: Mapping[str, Decimal]
    overage: Decimal
    period_start: datetime | None = None
    period_usage: Decimal = ZERO

    def __post_init__(self) -> None:
        _check_time("at", self.at)
        object.__setattr__(self, "balances", dict(self.balances))
        for grant_id, balance in self.balances.items():
            _check_amount(f"balance of {grant_id}", balance)
        _check_amount("overage", self.overage)
        _check_amount("period_usage", self.period_usage)
        if self.period_start is not None:
            _check_time("period_start", self.period_start)

    @property
    def balance(self) -> Decimal:
        return sum(self.balances.values(), ZERO)


@dataclass(frozen=True)
class Transition:
    """What happened at one instant, in the order it was applied (see the module docstring).

    ``expired``, ``voided`` and ``refilled`` map a grant id to the balance it had just before
    (the amount that left); ``rolled_over`` to its balance right after the reset's rollover;
    ``activated`` to its opening amount; ``overage_paid`` to what it paid towards overage.
    """

    at: datetime
    balance_before: dict[str, Decimal]
    balance_after: dict[str, Decimal]
    overage_before: Decimal
    overage_after: Decimal
    expired: dict[str, Decimal] = field(default_factory=dict)
    voided: dict[str, Decimal] = field(default_factory=dict)
    reset: Reset | None = None
    rolled_over: dict[str, Decimal] = field(default_factory=dict)
    overage_dropped: Decimal = ZERO
    refilled: dict[str, Decimal] = field(default_factory=dict)
    activated: dict[str, Decimal] = field(default_factory=dict)
    overage_paid: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class Segment:
    """Usage in ``[start, end)`` and how it burned the grants active throughout it.

    ``overage`` is the new overage arising in the segment (usage no grant covered).
    """

    start: datetime
    end: datetime
    usage: Decimal
    overage: Decimal
    balance_at_start: dict[str, Decimal]
    balance_at_end: dict[str, Decimal]
    overage_at_start: Decimal
    overage_at_end: Decimal
    grant_usages: dict[str, Decimal]
    usage_by_class: dict[UsageClass, Decimal]
    grant_usages_by_class: dict[UsageClass, dict[str, Decimal]]
    period_start: datetime

    @property
    def total_balance_at_start(self) -> Decimal:
        return sum(self.balance_at_start.values(), ZERO)

    @property
    def total_balance_at_end(self) -> Decimal:
        return sum(self.balance_at_end.values(), ZERO)


@dataclass(frozen=True)
class BurnResult:
    """Outcome of :func:`run` over ``[start, end)``; final values are as of ``end``.

    ``usage`` is the usage in the range; ``period_usage`` the usage since ``period_start``
    (the last reset, or where counting began), including usage before a resumed snapshot.
    """

    start: datetime
    end: datetime
    segments: list[Segment]
    transitions: list[Transition]
    balances: dict[str, Decimal]
    overage: Decimal
    usage: Decimal
    period_start: datetime
    period_usage: Decimal
    snapshot: Snapshot

    @property
    def balance(self) -> Decimal:
        return sum(self.balances.values(), ZERO)

    @property
    def usage_since_reset(self) -> Decimal:
        return self.period_usage

    @property
    def grant_usages(self) -> dict[str, Decimal]:
        """Usage burned from each grant over the whole range."""
        totals: dict[str, Decimal] = {}
        for segment in self.segments:
            for grant_id, amount in segment.grant_usages.items():
                totals[grant_id] = totals.get(grant_id, ZERO) + amount
        return totals

    def usage_between(self, start: datetime, end: datetime) -> Decimal:
        """Usage of the segments lying inside ``[start, end)``.

        Exact when ``start`` and ``end`` are segment boundaries (pass them to :func:`run` as
        ``boundaries`` to make sure).
        """
        return sum((s.usage for s in self.segments if start <= s.start and s.end <= end), ZERO)


@dataclass
class _State:
    balances: dict[str, Decimal]
    overage: Decimal
    period_start: datetime
    period_usage: Decimal


def _class_order(usage_class: UsageClass) -> tuple[int, str]:
    if usage_class is None:
        return (0, "")
    return (2, "") if usage_class == ANY_USAGE else (1, usage_class)


def _usage_by_class(raw: object, start: datetime, end: datetime) -> dict[UsageClass, Decimal]:
    items = raw.items() if isinstance(raw, Mapping) else [(None, raw)]
    by_class: dict[UsageClass, Decimal] = {}
    for usage_class, amount in items:
        if isinstance(amount, int) and not isinstance(amount, bool):
            amount = Decimal(amount)
        by_class[usage_class] = _check_amount(f"usage [{start}, {end}) {usage_class!r}", amount)
    return by_class


class _Engine:
    def __init__(self, grants: Iterable[Grant], resets: Iterable[Reset]) -> None:
        self.grants: dict[str, Grant] = {}
        for grant in grants:
            if grant.id in self.grants:
                raise ValueError(f"duplicate grant id {grant.id!r}")
            self.grants[grant.id] = grant
        self.keys = {grant.id: burn_order_key(grant) for grant in self.grants.values()}
        self.resets: dict[datetime, Reset] = {}
        for reset in resets:
            if reset.at in self.resets:
                raise ValueError(f"two resets at {reset.at}")
            self.resets[reset.at] = reset
        self.refills = {
            grant.id: frozenset(grant.refills) for grant in self.grants.values() if grant.refills
        }

    def ordered(self, grant_ids: Iterable[str]) -> list[str]:
        return sorted(grant_ids, key=self.keys.__getitem__)

    def instants(self) -> set[datetime]:
        """Every instant at which some grant or reset changes the state."""
        found = set(self.resets)
        for grant in self.grants.values():
            ends_at = grant.ends_at
            if ends_at is not None and ends_at <= grant.effective_at:
                continue
            found.add(grant.effective_at)
            if ends_at is not None:
                found.add(ends_at)
            found.update(t for t in grant.refills if grant.is_active_at(t))
        return found

    def transition(self, state: _State, t: datetime, *, opening: bool) -> Transition | None:
        """Apply what happens at ``t``; ``opening`` opens every grant already active at ``t``."""
        balance_before = dict(state.balances)
        overage_before = state.overage

        expired: dict[str, Decimal] = {}
        voided: dict[str, Decimal] = {}
        for grant_id in list(state.balances):
            grant = self.grants[grant_id]
            if not grant.is_active_at(t):
                target = voided if grant.ends_by_void else expired
                target[grant_id] = state.balances.pop(grant_id)

        reset = self.resets.get(t)
        rolled_over: dict[str, Decimal] = {}
        overage_dropped = ZERO
        if reset is not None:
            for grant_id, balance in state.balances.items():
                rolled_over[grant_id] = self.grants[grant_id].rollover(balance)
            state.balances.update(rolled_over)
            if not reset.preserve_overage:
                overage_dropped, state.overage = state.overage, ZERO
            state.period_start, state.period_usage = t, ZERO

        refilled: dict[str, Decimal] = {}
        for grant_id, balance in state.balances.items():
            if t in self.refills.get(grant_id, ()):
                refilled[grant_id] = balance
        for grant_id in refilled:
            state.balances[grant_id] = self.grants[grant_id].amount

        activated: dict[str, Decimal] = {}
        for grant in self.grants.values():
            opens = grant.effective_at == t or (opening and grant.effective_at < t)
            if opens and grant.id not in state.balances and grant.is_active_at(t):
                activated[grant.id] = grant.amount
        state.balances.update(activated)

        if reset is not None and reset.preserve_overage:
            payers = self.ordered(state.balances)
        else:
            payers = self.ordered([*refilled, *activated])
        overage_paid: dict[str, Decimal] = {}
        for grant_id in payers:
            if state.overage == 0:
                break
            paid = min(state.balances[grant_id], state.overage)
            if paid:
                state.balances[grant_id] -= paid
                state.overage -= paid
                overage_paid[grant_id] = paid

        if reset is None and not (expired or voided or refilled or activated):
            return None
        return Transition(
            at=t,
            balance_before=balance_before,
            balance_after=dict(state.balances),
            overage_before=overage_before,
            overage_after=state.overage,
            expired=expired,
            voided=voided,
            reset=reset,
            rolled_over=rolled_over,
            overage_dropped=overage_dropped,
            refilled=refilled,
            activated=activated,
            overage_paid=overage_paid,
        )

    def burn(self, state: _State, start: datetime, end: datetime, raw: object) -> Segment:
        """Attribute one segment's usage: class by class, each in burn order."""
        by_class = _usage_by_class(raw, start, end)
        balance_at_start = dict(state.balances)
        overage_at_start = state.overage
        active = self.ordered(state.balances)

        grant_usages: dict[str, Decimal] = {}
        by_class_usages: dict[UsageClass, dict[str, Decimal]] = {}
        new_overage = ZERO
        for usage_class in sorted(by_class, key=_class_order):
            remaining = by_class[usage_class]
            burned: dict[str, Decimal] = {}
            for grant_id in active:
                if remaining == 0:
                    break
                if not self.grants[grant_id].covers(usage_class):
                    continue
                take = min(state.balances[grant_id], remaining)
                if take:
                    state.balances[grant_id] -= take
                    remaining -= take
                    burned[grant_id] = take
                    grant_usages[grant_id] = grant_usages.get(grant_id, ZERO) + take
            by_class_usages[usage_class] = burned
            new_overage += remaining

        total = sum(by_class.values(), ZERO)
        state.overage += new_overage
        state.period_usage += total
        return Segment(
            start=start,
            end=end,
            usage=total,
            overage=new_overage,
            balance_at_start=balance_at_start,
            balance_at_end=dict(state.balances),
            overage_at_start=overage_at_start,
            overage_at_end=state.overage,
            grant_usages=grant_usages,
            usage_by_class=by_class,
            grant_usages_by_class=by_class_usages,
            period_start=state.period_start,
        )

    def resume(self, snapshot: Snapshot) -> _State:
        expected = {g.id for g in self.grants.values() if g.is_active_at(snapshot.at)}
        if set(snapshot.balances) != expected:
            missing = sorted(expected - set(snapshot.balances))
            unknown = sorted(set(snapshot.balances) - expected)
            raise StaleSnapshotError(
                f"snapshot at {snapshot.at} does not match the grants active then "
                f"(missing {missing}, not active or unknown {unknown})"
            )
        return _State(
            balances=dict(snapshot.balances),
            overage=snapshot.overage,
            period_start=snapshot.period_start or snapshot.at,
            period_usage=snapshot.period_usage,
        )


def run(
    *,
    grants: Iterable[Grant],
    start: datetime,
    end: datetime,
    usage: UsageFn,
    resets: Iterable[Reset] = (),
    snapshot: Snapshot | None = None,
    boundaries: Iterable[datetime] = (),
) -> BurnResult:
    """Burn ``usage`` over ``[start, end)`` down the ``grants``; return segments and balances.

    ``usage(seg_start, seg_end)`` is called once per segment and returns the usage in that
    half-open interval: a ``Decimal`` (one unclassified stream, class ``None``) or a mapping
    of usage class to ``Decimal``; every amount must be ``>= 0``. A class may only burn grants
    eligible for it; classes are attributed one after another (unclassified first, then by
    name, then :data:`ANY_USAGE`), each in burn order, and what no grant covers becomes
    overage.

    Without ``snapshot`` the run starts empty: grants already active at ``start`` open with
    their full amount (as if nothing was used before ``start``). With ``snapshot`` (which must
    be taken at ``start``) the run continues from it; the transition at ``start`` is part of
    the snapshot and not applied again. Resets and grant events outside ``[start, end]`` are
    ignored. ``boundaries`` adds instants at which to cut segments (e.g. history windows or
    event times); with one usage class they never change the outcome.
    """
    _check_time("start", start)
    _check_time("end", end)
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    resets = tuple(resets)
    engine = _Engine(grants, resets)
    extra = set(boundaries)
    for instant in extra:
        _check_time("boundaries", instant)
    events = {t for t in engine.instants() if start < t <= end}
    cuts = sorted({start, end} | {t for t in events | extra if start < t < end})

    transitions: list[Transition] = []
    if snapshot is None:
        state = _State(balances={}, overage=ZERO, period_start=start, period_usage=ZERO)
        opening = engine.transition(state, start, opening=True)
        if opening is not None:
            transitions.append(opening)
    else:
        if snapshot.at != start:
            raise ValueError(f"snapshot is at {snapshot.at}, the run starts at {start}")
        state = engine.resume(snapshot)

    segments: list[Segment] = []
    for seg_start, seg_end in pairwise(cuts):
        segments.append(engine.burn(state, seg_start, seg_end, usage(seg_start, seg_end)))
        if seg_end in events:
            step = engine.transition(state, seg_end, opening=False)
            if step is not None:
                transitions.append(step)

    final = Snapshot(
        at=end,
        balances=state.balances,
        overage=state.overage,
        period_start=state.period_start,
        period_usage=state.period_usage,
    )
    return BurnResult(
        start=start,
        end=end,
        segments=segments,
        transitions=transitions,
        balances=dict(state.balances),
        overage=state.overage,
        usage=sum((s.usage for s in segments), ZERO),
        period_start=state.period_start,
        period_usage=state.period_usage,
        snapshot=final,
    )
