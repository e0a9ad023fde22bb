"""Glue between entitlement rows and the pure burn-down engine (no queries in here).

Everything a read needs is derived from stored facts: the entitlement's usage period (anchor,
interval), its manual resets (each may move the anchor), its grants (expiry, void, recurrence)
and a usage function. Automatic resets at usage-period boundaries are computed here, never read
from the database, so reads do not depend on whether the scheduled jobs ran.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from grants import engine
from ledgers import periods

ZERO = Decimal(0)
ADDITIVE_AGGREGATIONS = frozenset({"sum", "count"})


@dataclass(frozen=True)
class ManualReset:
    at: datetime
    preserve_overage: bool
    anchor: datetime  # the usage-period anchor from this reset on


@dataclass(frozen=True)
class UsagePeriod:
    """Usage-period schedule of one metered entitlement, with its manual resets."""

    interval: periods.Interval
    anchor: datetime
    measure_from: datetime
    preserve_overage: bool
    tz: str
    manual: tuple[ManualReset, ...] = ()

    def anchor_at(self, t: datetime) -> tuple[datetime, datetime]:
        """(anchor in effect at t, start of the manual piece containing t)."""
        anchor, piece_start = self.anchor, self.measure_from
        for reset in self.manual:
            if reset.at <= t:
                anchor, piece_start = reset.anchor, reset.at
            else:
                break
        return anchor, piece_start

    def resets(self, start: datetime, end: datetime) -> list[engine.Reset]:
        """Every reset at an instant in ``(start, end]``, manual and automatic, in order."""
        found: dict[datetime, engine.Reset] = {}
        cuts = [self.measure_from, *(r.at for r in self.manual)]
        anchors = [self.anchor, *(r.anchor for r in self.manual)]
        for index, piece_start in enumerate(cuts):
            piece_end = cuts[index + 1] if index + 1 < len(cuts) else None
            lo = max(piece_start, start)
            hi = end if piece_end is None else min(piece_end, end)
            if hi < lo:
                continue
            for b in periods.iter_boundaries(anchors[index], self.interval, lo, hi, self.tz):
                found[b] = engine.Reset(at=b, preserve_overage=self.preserve_overage)
            if (piece_end is None or hi < piece_end) and hi > piece_start and hi > start \
                    and periods.is_boundary(anchors[index], self.interval, hi, self.tz):
                found[hi] = engine.Reset(at=hi, preserve_overage=self.preserve_overage)
        for reset in self.manual:
            if start < reset.at <= end:
                found[reset.at] = engine.Reset(at=reset.at,
                                               preserve_overage=reset.preserve_overage)
        return [found[t] for t in sorted(found)]

    def period_at(self, t: datetime) -> tuple[datetime, datetime]:
        """The usage period ``[from, to)`` containing ``t`` (``to`` assumes no later manual
        reset)."""
        anchor, piece_start = self.anchor_at(t)
        p_start, p_end = periods.period_containing(anchor, self.interval, t, self.tz)
        return max(p_start, piece_start), p_end

    def last_reset_at(self, t: datetime) -> datetime | None:
        start = self.period_at(t)[0]
        return None if start == self.measure_from else start


def grant_refills(*, effective_at: datetime, ends_at: datetime | None, interval: str | None,
                  anchor: datetime | None, start: datetime, end: datetime,
                  tz: str) -> tuple[datetime, ...]:
    """Recurrence instants r with effective_at < r, start < r <= end and r < ends_at."""
    if not interval:
        return ()
    lo = max(effective_at, start)
    hi = end if ends_at is None else min(end, ends_at)
    if hi <= lo:
        return ()
    found = list(periods.iter_boundaries(anchor, interval, lo, hi, tz))
    if hi == end and (ends_at is None or end < ends_at) and periods.is_boundary(
            anchor, interval, end, tz):
        found.append(end)
    return tuple(found)


class PeriodUsage:
    """The engine's usage function over a metering ``total(start, end)``.

    Sum and count meters are additive: a segment's usage is ``total(seg_start, seg_end)``.
    Others (unique_count, latest) are measured from the start of the usage period:
    ``total(period_start, seg_end) - total(period_start, seg_start)`` (never below 0), so the
    period's usage is ``total(period_start, t)`` exactly, however segments are cut.
    """

    def __init__(self, total: Callable[[datetime, datetime], Decimal], *, additive: bool,
                 reset_instants: Sequence[datetime], measure_from: datetime):
        self.total = total
        self.additive = additive
        self.reset_instants = sorted(reset_instants)
        self.measure_from = measure_from
        self._cumulative: dict[tuple[datetime, datetime], Decimal] = {}

    def _period_start(self, t: datetime) -> datetime:
        index = bisect.bisect_right(self.reset_instants, t)
        return self.reset_instants[index - 1] if index else self.measure_from

    def _since(self, period_start: datetime, t: datetime) -> Decimal:
        if t <= period_start:
            return ZERO
        key = (period_start, t)
        if key not in self._cumulative:
            self._cumulative[key] = self.total(period_start, t)
        return self._cumulative[key]

    def ranges(self, cuts: Sequence[datetime]) -> list[tuple[datetime, datetime]]:
        """The ``total`` ranges that calls for the segments between consecutive ``cuts`` ask
        for (to load them at once)."""
        out: dict[tuple[datetime, datetime], None] = {}
        for start, end in zip(cuts[:-1], cuts[1:], strict=True):
            if end <= start:
                continue
            if self.additive:
                out[(start, end)] = None
                continue
            period_start = self._period_start(start)
            for t in (end, start):
                if t > period_start:
                    out[(period_start, t)] = None
        return list(out)

    def __call__(self, start: datetime, end: datetime) -> Decimal:
        if end <= start:
            return ZERO
        if self.additive:
            return self.total(start, end)
        period_start = self._period_start(start)
        return max(ZERO, self._since(period_start, end) - self._since(period_start, start))
