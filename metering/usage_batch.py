"""Usage totals of one meter and customer over many ranges in one statement.

``usage_totals(meter=, customer=, ranges=[(start, end), ...])`` returns, for every range,
exactly what :func:`metering.selectors.usage_total` returns for it, from one usage query (one
snapshot) instead of two round trips per range: every range is split into whole days, whole
hours and raw edges as metering's own ``usage`` does (for sum, count and avg meters a long raw
edge is read as its hour minus the rest of it: ``split_range_signed``), and the pieces are
tagged with the index of their range (the windows of metering's usage statement). Built on
metering's SQL so rollups, the tail and the raw edges can never disagree with ``usage_total``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from billing_project.db import execute_prepared
from billing_project.errors import InvalidInput
from metering.models import Meter
from metering.selectors import (
    SUBTRACTABLE_AGGREGATIONS,
    _usage_sql,
    _validate_groups,
    _value,
    split_range_signed,
    usage_params,
)


def usage_totals(*, meter: Meter, customer, ranges: Sequence[tuple[datetime, datetime]],
                 filters: dict | None = None, tail_hint: int | None = None) -> list[Decimal]:
    """``usage_total(meter, customer, start, end, filters)`` for each ``(start, end)``, in order.

    ``tail_hint``: the rollup watermark read earlier (it only ever grows), for the planner;
    read here when not given. The statement itself re-reads the watermark in its own snapshot,
    so an older hint never changes the result.
    """
    if not ranges:
        return []
    for start, end in ranges:
        if start.tzinfo is None or end.tzinfo is None:
            raise InvalidInput("start and end must be aware datetimes.",
                               code="invalid_timeframe")
        if start >= end:
            raise InvalidInput("timeframe_start must be before timeframe_end.",
                               code="invalid_timeframe", field="timeframe_end")
    group_by, filters = _validate_groups(meter, (), filters)
    subtractable, now = meter.aggregation in SUBTRACTABLE_AGGREGATIONS, timezone.now()
    params = usage_params(((index, size, seg_start, seg_end, sign)
                           for index, (start, end) in enumerate(ranges)
                           for size, seg_start, seg_end, sign in split_range_signed(
                               start, end, subtractable=subtractable, now=now)),
                          meter=meter, customer=customer, tail_hint=tail_hint)
    given = customer is not None
    options = dict(meter=meter, per_customer=given, customer_given=given,
                   group_by=group_by, filters=filters, params=params)
    # Prepared: on the value endpoint's hot path, parsing this statement and quoting its
    # window arrays client-side cost more than running it.
    fetched = execute_prepared(_usage_sql(**options), params, fetch=True)
    if meter.aggregation == Meter.Aggregation.UNIQUE_COUNT:  # never signed: cannot subtract
        # As metering's usage: the distinct values come from their own rollups.
        distinct = {row[0]: row[3] for row in
                    execute_prepared(_usage_sql(unique=True, **options), params, fetch=True)}
        fetched = [(row[0], row[1], row[2], distinct.get(row[0], 0)) for row in fetched]
    # One customer (or all of them together) and no group_by: at most one row per range.
    by_range = {row[0]: row for row in fetched}
    out = []
    for index in range(len(ranges)):
        row = by_range.get(index)
        value = _value(meter, row) if row is not None else None
        out.append(value if value is not None else Decimal(0))
    return out
