"""Metering reads: meters, events and usage (the selector every other app uses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import F, QuerySet

from billing_project.decimals import FRACTION_QUANTUM, normalize
from billing_project.errors import InvalidInput, NotFound
from metering.models import DAY, HOUR, Event, Meter
from metering.rollups import WATERMARK_SQL, literal, meter_sql

WINDOW_SIZES = ("minute", "hour", "day", "month")
MAX_WINDOWS = 10_000
RAW = 0


@dataclass(frozen=True)
class UsageRow:
    window_start: datetime
    window_end: datetime
    value: Decimal | None
    customer_id: str | None
    group_by: dict = field(default_factory=dict)


# --- meters ----------------------------------------------------------------------------------

def meter_list(*, include_archived: bool = False) -> QuerySet[Meter]:
    meters = Meter.objects.all()
    return meters if include_archived else meters.filter(archived_at__isnull=True)


def meter_get(id_or_slug: str) -> Meter:
    """By id, else the active meter with that slug, else the latest archived one."""
    meter = (Meter.objects.filter(pk=id_or_slug).first()
             or Meter.objects.filter(slug=id_or_slug)
             .order_by(F("archived_at").desc(nulls_first=True)).first())
    if meter is None:
        raise NotFound(f"No meter '{id_or_slug}'.", code="meter_not_found")
    return meter


def meter_skipped_events(meters: list[Meter]) -> dict[str, int]:
    """Counted events of each meter without a usable value (rollups + the unfolded tail)."""
    if not meters:
        return {}
    tails = [f"""SELECT {literal(m.pk)}, count(*) FILTER (WHERE NOT {meter_sql(m).valued})
                 FROM metering_event AS s
                 WHERE s.ins_seq >= %(tail_hint)s AND s.ins_seq >= {WATERMARK_SQL}
                       AND s.counted
                       AND s.customer_id IS NOT NULL AND s.event_name = {literal(m.event_name)}"""
             for m in meters]
    with connection.cursor() as cursor:
        cursor.execute(f"""
            SELECT meter_id, sum(skipped) FROM (
                SELECT meter_id, sum(events - valued) AS skipped FROM metering_usagerollup
                WHERE meter_id = ANY(%(meters)s) AND size = {DAY} GROUP BY meter_id
                UNION ALL {" UNION ALL ".join(tails)}
            ) AS parts (meter_id, skipped) GROUP BY meter_id""",
                       {"meters": [m.pk for m in meters], "tail_hint": _watermark_hint()})
        found = {pk: int(skipped or 0) for pk, skipped in cursor.fetchall()}
    return {m.pk: found.get(m.pk, 0) for m in meters}


# --- events ----------------------------------------------------------------------------------

def event_search(*, event_ids: list[str], timeframe_start: datetime | None = None,
                 timeframe_end: datetime | None = None) -> list[Event]:
    events = Event.objects.filter(event_id__in=event_ids)
    if timeframe_start is not None:
        events = events.filter(timestamp__gte=timeframe_start)
    if timeframe_end is not None:
        events = events.filter(timestamp__lt=timeframe_end)
    return list(events.order_by("timestamp", "event_id"))


# --- usage -----------------------------------------------------------------------------------

def _floor_local(value: datetime, size: str, tz: ZoneInfo) -> datetime:
    local = value.astimezone(tz)
    if size == "minute":
        local = local.replace(second=0, microsecond=0)
    elif size == "hour":
        local = local.replace(minute=0, second=0, microsecond=0)
    elif size == "day":
        local = datetime(local.year, local.month, local.day, tzinfo=tz)
    else:
        local = datetime(local.year, local.month, 1, tzinfo=tz)
    return local.astimezone(UTC)


def _next_boundary(boundary: datetime, size: str, tz: ZoneInfo) -> datetime:
    if size == "minute":
        return boundary + timedelta(minutes=1)
    if size == "hour":
        return boundary + timedelta(hours=1)
    local = boundary.astimezone(tz)
    if size == "day":
        day = local.date() + timedelta(days=1)
        return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(year, month, 1, tzinfo=tz).astimezone(UTC)


def usage_windows(*, start: datetime, end: datetime, window: str | None,
                  window_time_zone: str = "UTC") -> list[tuple[datetime, datetime]]:
    """[start, end) cut at window boundaries in the time zone (first/last windows clipped)."""
    if window is None:
        return [(start, end)]
    if window not in WINDOW_SIZES:
        raise InvalidInput(f"window_size must be one of {', '.join(WINDOW_SIZES)}.",
                           code="invalid_window_size", field="window_size")
    tz = ZoneInfo(window_time_zone)
    windows = []
    boundary = _floor_local(start, window, tz)
    while boundary < end:
        following = _next_boundary(boundary, window, tz)
        if following <= boundary:  # a DST gap swallowed the boundary: step again
            following = _next_boundary(following + timedelta(hours=2), window, tz)
        windows.append((max(boundary, start), min(following, end)))
        if len(windows) > MAX_WINDOWS:
            raise InvalidInput(f"At most {MAX_WINDOWS} windows per query; use a larger "
                               "window_size or a shorter timeframe.", code="too_many_windows",
                               field="window_size")
        boundary = following
    return windows


def _ceil(value: datetime, seconds: int) -> datetime:
    floor = _floor(value, seconds)
    if floor == value:
        return floor
    try:
        return floor + timedelta(seconds=seconds)
    except OverflowError:  # past 9999-12-31: later than any bound
        return _CALENDAR_END


def _floor(value: datetime, seconds: int) -> datetime:
    epoch, size = datetime(1970, 1, 1, tzinfo=UTC), timedelta(seconds=seconds)
    return epoch + (value - epoch) // size * size  # integer arithmetic: exact to the µs


def _split_hours(start: datetime, end: datetime) -> list[tuple[int, datetime, datetime]]:
    h0, h1 = _ceil(start, HOUR), _floor(end, HOUR)
    if h0 >= h1:
        return [(RAW, start, end)] if start < end else []
    segments = []
    if start < h0:
        segments.append((RAW, start, h0))
    segments.append((HOUR, h0, h1))
    if h1 < end:
        segments.append((RAW, h1, end))
    return segments


def split_range(start: datetime, end: datetime) -> list[tuple[int, datetime, datetime]]:
    """[start, end) -> segments (size, s, e): whole UTC days and whole hours (rollups + the
    tail) and the partial hours at the edges (raw events, size 0)."""
    d0, d1 = _ceil(start, DAY), _floor(end, DAY)
    if d0 >= d1:
        return _split_hours(start, end)
    return [*_split_hours(start, d0), (DAY, d0, d1), *_split_hours(d1, end)]


# Aggregations computed from the event count, the valued count and the sum alone, which a
# negative window subtracts exactly. (Not entitlements' ADDITIVE_AGGREGATIONS, the values that
# add up across ranges: avg is here, not there.)
SUBTRACTABLE_AGGREGATIONS = (Meter.Aggregation.SUM, Meter.Aggregation.COUNT,
                             Meter.Aggregation.AVG)
MAX_SCALAR_RAW_WINDOWS = 8
_CALENDAR_END = datetime.max.replace(tzinfo=UTC)


def _following_hour(value: datetime) -> datetime:
    """The end of the UTC hour holding ``value`` (the calendar's end in its last hour)."""
    try:
        return _floor(value, HOUR) + timedelta(seconds=HOUR)
    except OverflowError:
        return _CALENDAR_END


def split_range_signed(start: datetime, end: datetime, *, subtractable: bool,
                       now: datetime | None = None) -> list[tuple[int, datetime, datetime, int]]:
    """``split_range`` with a sign per segment (size, s, e, sign).

    For ``subtractable`` aggregations (SUBTRACTABLE_AGGREGATIONS) a raw edge longer than half
    an hour is read as its whole hour (rollups + tail) minus the raw events of the rest of that
    hour, so no edge reads more than half an hour of raw events.
    With ``now``, time after it counts as holding no events (usually true, and exact either
    way): the current hour of a range ending now is read as the hour minus its raw events
    after now, unless the part before the edge is the longer. Otherwise every segment has the
    sign 1 and this is ``split_range``."""

    def past(a: datetime, b: datetime) -> timedelta:  # the raw events to read, by duration
        return max(min(b, now) - a, timedelta(0)) if now is not None else b - a

    out = []
    for size, seg_start, seg_end in split_range(start, end):
        if not subtractable or size != RAW:
            out.append((size, seg_start, seg_end, 1))
            continue
        # a raw segment lies within one hour, or within two when it crosses one boundary
        # (split_range leaves [10:20, 11:40) raw): one part per hour
        boundary = _following_hour(seg_start)
        parts = ([(seg_start, boundary), (boundary, seg_end)] if boundary < seg_end
                 else [(seg_start, seg_end)])
        for part_start, part_end in parts:
            hour, following = _floor(part_start, HOUR), _following_hour(part_start)
            if following == _CALENDAR_END or (past(hour, part_start) + past(part_end, following)
                                              >= past(part_start, part_end)):  # no longer: raw
                out.append((RAW, part_start, part_end, 1))
                continue
            out.append((HOUR, hour, following, 1))
            if hour < part_start:
                out.append((RAW, hour, part_start, -1))
            if part_end < following:
                out.append((RAW, part_end, following, -1))
    return out


def usage_params(pieces, *, meter: Meter, customer, tail_hint: int | None = None) -> dict:
    """Parameters of ``_usage_sql``: the windows (``window_params``), the meter, the customer
    (None: all) and the rollup watermark hint (read now when not given)."""
    params = window_params(pieces)
    params.update({"meter": meter.pk,
                   "tail_hint": _watermark_hint() if tail_hint is None else tail_hint,
                   "event_name": meter.event_name,
                   "customer": customer.pk if customer is not None else None})
    return params


def window_params(pieces) -> dict:
    """Parameters of ``_usage_sql``'s windows from ``(index, size, start, end, sign)`` pieces:
    rollup windows as arrays; raw windows as arrays too, and, when there are at most
    ``MAX_SCALAR_RAW_WINDOWS`` of them, also one by one (``raw_windows``), so that the planner
    sees each raw edge's bounds and reads it through the (customer, event_name, timestamp)
    index instead of guessing a width for bounds hidden in an array."""
    params = {"wi": [], "ws": [], "we": [], "wk": [], "wg": []}
    raw = []
    for index, size, seg_start, seg_end, sign in pieces:
        params["wi"].append(index)
        params["ws"].append(seg_start)
        params["we"].append(seg_end)
        params["wk"].append(size)
        params["wg"].append(sign)
        if size == RAW:
            raw.append((index, seg_start, seg_end, sign))
    if len(raw) <= MAX_SCALAR_RAW_WINDOWS:
        for j, (index, seg_start, seg_end, sign) in enumerate(raw):
            params.update({f"ri{j}": index, f"rs{j}": seg_start, f"re{j}": seg_end,
                           f"rg{j}": sign})
        params["raw_windows"] = len(raw)
    else:
        params["raw_windows"] = None
    return params


def _group_select(source: str, group_by: tuple[str, ...]) -> str:
    if not group_by:
        return "'{}'::jsonb"
    parts = ", ".join(f"'{name}', {source} -> '{name}'" for name in group_by)
    return f"jsonb_build_object({parts})"


def _filter_sql(source: str, filters: dict[str, str], params: dict) -> str:
    clauses = []
    for index, (name, value) in enumerate(sorted(filters.items())):
        params[f"f{index}"] = value
        clauses.append(f"{source} ->> '{name}' = %(f{index})s")
    return " AND ".join(clauses) or "TRUE"


def _validate_groups(meter: Meter, group_by, filters) -> tuple[tuple[str, ...], dict]:
    group_by = tuple(dict.fromkeys(group_by or ()))
    filters = dict(filters or {})
    known = set(meter.group_by or {})
    for name in group_by:
        if name not in known:
            raise InvalidInput(f"group_by '{name}' is not one of the meter's group_by keys "
                               f"({', '.join(sorted(known)) or 'none'}).",
                               code="unknown_group_by", field="group_by")
    for name, value in filters.items():
        if name not in known:
            raise InvalidInput(f"filter[{name}]: not one of the meter's group_by keys "
                               f"({', '.join(sorted(known)) or 'none'}).",
                               code="unknown_filter", field=f"filter[{name}]")
        if not isinstance(value, str):
            raise InvalidInput(f"filter[{name}] must be a string.", code="invalid_filter",
                               field=f"filter[{name}]")
    return group_by, filters


def _usage_sql(meter: Meter, *, per_customer: bool, customer_given: bool, group_by, filters,
               params: dict, unique: bool = False) -> str:
    """One statement (one snapshot): rollups of whole days and hours + the tail (events at or
    above the watermark) in those + every raw event in the partial hours at the edges.

    ``params`` come from ``usage_params``. Every window has a sign: event counts, valued
    counts and sums are multiplied by it (negative windows only come from
    ``split_range_signed``; min, max, latest and distinct values cannot be subtracted)."""
    if -1 in params["wg"] and (unique or meter.aggregation not in SUBTRACTABLE_AGGREGATIONS):
        raise ValueError(f"{meter.aggregation} usage cannot subtract a window")
    expr = meter_sql(meter)
    customer_col = "{t}.customer_id" if per_customer else "NULL::text"
    rollup_customer = "AND r.customer_id = %(customer)s" if customer_given else ""
    raw_customer = ("AND s.customer_id = %(customer)s" if customer_given
                    else "AND s.customer_id IS NOT NULL")
    rollup_filter = _filter_sql("r.grp", filters, params)
    raw_filter = _filter_sql("e.grp", filters, params)
    windows = ("(SELECT * FROM unnest(%(wi)s::int[], %(ws)s::timestamptz[], "
               "%(we)s::timestamptz[], %(wk)s::int[], %(wg)s::int[]) AS w(i, s, e, k, g))")
    columns = (f"s.customer_id, s.timestamp, s.event_id, {expr.grp} AS grp, "
               f"{expr.num} AS num, {expr.uval} AS uval, {expr.valued} AS valued")
    raw_events = (f"SELECT {columns} FROM metering_event AS s "
                  f"WHERE s.event_name = %(event_name)s AND s.counted {raw_customer} ")
    if params.get("raw_windows") is None:  # many raw windows: one lateral scan per window
        edges = [f"""
        FROM {windows} AS w
        CROSS JOIN LATERAL ({raw_events}
                  AND s.timestamp >= w.s AND s.timestamp < w.e) AS e
        WHERE w.k = {RAW} AND {raw_filter}"""]
    else:  # each raw window with its own bounds, visible to the planner
        edges = [f"""
        FROM (SELECT %(ri{j})s::int AS i, %(rg{j})s::int AS g) AS w
        CROSS JOIN LATERAL ({raw_events}
                  AND s.timestamp >= %(rs{j})s::timestamptz
                  AND s.timestamp < %(re{j})s::timestamptz) AS e
        WHERE {raw_filter}""" for j in range(params["raw_windows"])]
    tail = f"""
        FROM (SELECT {columns} FROM metering_event AS s
              WHERE s.ins_seq >= %(tail_hint)s AND s.ins_seq >= {WATERMARK_SQL}
                    AND s.event_name = %(event_name)s AND s.counted {raw_customer}) AS e
        JOIN {windows} AS w ON w.k > {RAW} AND e.timestamp >= w.s AND e.timestamp < w.e
        WHERE {raw_filter}"""
    if unique:
        raw = (f"SELECT w.i, {customer_col.format(t='e')}, {_group_select('e.grp', group_by)}, "
               "md5(e.uval)::uuid")
        raw_parts = "".join(f" UNION ALL {raw} {edge} AND e.uval IS NOT NULL" for edge in edges)
        return f"""
SELECT i, customer_id, grp, count(DISTINCT value_hash) FROM (
    SELECT w.i, {customer_col.format(t="u")} AS customer_id,
           {_group_select("u.grp", group_by)} AS grp, u.value_hash
    FROM {windows} AS w
    JOIN metering_uniquevaluerollup AS u ON u.meter_id = %(meter)s
         {rollup_customer.replace("r.", "u.")} AND u.size = w.k
         AND u.bucket >= w.s AND u.bucket < w.e
    WHERE w.k > {RAW} AND {rollup_filter.replace("r.", "u.")}
    {raw_parts}
    UNION ALL {raw} {tail} AND e.uval IS NOT NULL
) AS parts GROUP BY i, customer_id, grp"""
    raw = (f"SELECT w.i, {customer_col.format(t='e')}, {_group_select('e.grp', group_by)}, w.g, "
           "CASE WHEN e.valued THEN w.g ELSE 0 END, e.num * w.g, e.num, e.num, "
           "CASE WHEN e.num IS NOT NULL THEN e.timestamp END, e.event_id, e.num")
    raw_parts = "".join(f" UNION ALL {raw} {edge}" for edge in edges)
    return f"""
SELECT i, customer_id, grp, sum(events), sum(valued), sum(total), min(min), max(max),
       (array_agg(latest_value ORDER BY latest_ts DESC, latest_id DESC)
            FILTER (WHERE latest_ts IS NOT NULL))[1]
FROM (
    SELECT w.i, {customer_col.format(t="r")} AS customer_id,
           {_group_select("r.grp", group_by)} AS grp, r.events * w.g, r.valued * w.g,
           r.total * w.g, r.min, r.max, r.latest_ts, r.latest_id, r.latest_value
    FROM {windows} AS w
    JOIN metering_usagerollup AS r ON r.meter_id = %(meter)s
         {rollup_customer} AND r.size = w.k AND r.bucket >= w.s AND r.bucket < w.e
    WHERE w.k > {RAW} AND {rollup_filter}
    {raw_parts}
    UNION ALL {raw} {tail}
) AS parts (i, customer_id, grp, events, valued, total, min, max, latest_ts, latest_id,
            latest_value)
GROUP BY i, customer_id, grp"""


def _watermark_hint() -> int:
    """W as of now, for the planner: the tail is read through the ins_seq index. The statement
    itself re-reads W in its own snapshot, so a compaction in between changes nothing."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {WATERMARK_SQL}")
        return cursor.fetchone()[0]


def _avg(total: Decimal | None, valued: int) -> Decimal | None:
    if not valued or total is None:
        return None
    with localcontext() as ctx:
        ctx.prec = 60
        return normalize((total / valued).quantize(FRACTION_QUANTUM, rounding=ROUND_HALF_EVEN))


def _value(meter: Meter, row) -> Decimal | None:
    aggregation = meter.aggregation
    if aggregation == Meter.Aggregation.UNIQUE_COUNT:
        return Decimal(row[3] or 0)
    events, valued, total, low, high, latest = row[3:9]
    if aggregation == Meter.Aggregation.COUNT:
        return Decimal(events or 0)
    if aggregation == Meter.Aggregation.SUM:
        return normalize(total) if total is not None else Decimal(0)
    if aggregation == Meter.Aggregation.AVG:
        return _avg(total, valued)
    value = {Meter.Aggregation.MIN: low, Meter.Aggregation.MAX: high,
             Meter.Aggregation.LATEST: latest}[aggregation]
    return normalize(value) if value is not None else None


def _empty_value(meter: Meter) -> Decimal | None:
    if meter.aggregation in (Meter.Aggregation.SUM, Meter.Aggregation.COUNT,
                             Meter.Aggregation.UNIQUE_COUNT):
        return Decimal(0)
    return None


def usage(*, meter: Meter, customer=None, start: datetime, end: datetime,
          window: str | None = None, window_time_zone: str = "UTC", group_by=(),
          filters: dict | None = None, per_customer: bool = False) -> list[UsageRow]:
    """Usage of a meter in [start, end), per window (None: one row), exact to the microsecond.

    Whole UTC days and hours come from rollups (plus the not yet folded tail), the partial hours
    at the edges from raw events.
    Without a customer every customer is aggregated (customer_id None in the rows; with
    per_customer=True one row per customer instead). With group_by, only groups with events are
    returned; without, every window has a row (0 for sum/count/unique_count, else None).
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("start and end must be aware datetimes.", code="invalid_timeframe")
    if start >= end:
        raise InvalidInput("timeframe_start must be before timeframe_end.",
                           code="invalid_timeframe", field="timeframe_end")
    try:
        ZoneInfo(window_time_zone)
    except (KeyError, ValueError, TypeError):
        raise InvalidInput(f"'{window_time_zone}' is not an IANA time zone.",
                           code="invalid_timezone", field="window_time_zone") from None
    group_by, filters = _validate_groups(meter, group_by, filters)
    windows = usage_windows(start=start, end=end, window=window,
                            window_time_zone=window_time_zone)
    params = usage_params(((index, size, seg_start, seg_end, 1)
                           for index, (window_start, window_end) in enumerate(windows)
                           for size, seg_start, seg_end in split_range(window_start, window_end)),
                          meter=meter, customer=customer)
    per_customer = customer is not None or per_customer
    options = dict(meter=meter, per_customer=per_customer, customer_given=customer is not None,
                   group_by=group_by, filters=filters, params=params)
    with connection.cursor() as cursor:
        cursor.execute(_usage_sql(**options), params)
        fetched = cursor.fetchall()
        if meter.aggregation == Meter.Aggregation.UNIQUE_COUNT:
            # Groups come from the event counts; the distinct values from their own rollups.
            cursor.execute(_usage_sql(unique=True, **options), params)
            distinct = {(row[0], row[1], _group_key(row[2])): row[3]
                        for row in cursor.fetchall()}
            fetched = [(row[0], row[1], row[2],
                        distinct.get((row[0], row[1], _group_key(row[2])), 0))
                       for row in fetched]
    by_window: dict[int, list] = {}
    for row in fetched:
        by_window.setdefault(row[0], []).append(row)
    result = []
    for index, (window_start, window_end) in enumerate(windows):
        rows = sorted(by_window.get(index, []), key=lambda r: (r[1] or "", _group_key(r[2])))
        if not rows and not group_by and (customer is not None or not per_customer):
            result.append(UsageRow(window_start, window_end, _empty_value(meter),
                                   customer.pk if customer is not None else None, {}))
            continue
        for row in rows:
            grp = _decode_group(row[2])
            result.append(UsageRow(window_start, window_end, _value(meter, row), row[1], grp))
    return result


def _decode_group(value) -> dict:
    if isinstance(value, str):
        import json

        return json.loads(value)
    return dict(value or {})


def _group_key(value) -> str:
    import json

    return json.dumps(_decode_group(value), sort_keys=True)


def usage_total(*, meter: Meter, customer, start: datetime, end: datetime,
                filters: dict | None = None) -> Decimal:
    """One number for [start, end): 0 when there are no events (never None)."""
    rows = usage(meter=meter, customer=customer, start=start, end=end, filters=filters)
    value = rows[0].value if rows else None
    return value if value is not None else Decimal(0)

