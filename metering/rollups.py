"""Hour and day rollups of usage, folded in behind a watermark: ingestion only writes events.

Every ingest transaction takes a batch number from a sequence while holding the ingest lock
(shared) and stamps its events with it (`ins_seq`). The single watermark row holds W: the
rollups contain exactly the counted events with ins_seq < W. Compaction takes the ingest lock
exclusively for an instant (a barrier: every batch that drew a number before has finished), draws
N, releases the lock, folds the events with W <= ins_seq < N and sets W = N, in one transaction.
A usage query (one statement, one snapshot) adds the raw events with ins_seq >= W (the "tail",
read through its own index) to the rollups, so it includes everything committed before it
(read-your-writes) and nothing twice.

Compaction runs after ingest commits (throttled) and as a beat job. Amendments, deprecations,
backfills, attribution and new meters rebuild the affected days from events below W. Compaction
and rebuilds hold the writer lock.

One definition of "the value of an event for a meter" and "its group" lives here, so rollups,
the tail and the raw edges of a query can never disagree.
"""

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from metering.models import DAY, HOUR, INGEST_SEQUENCE

logger = logging.getLogger("metering.rollups")

WRITER_LOCK_KEY = 727_001  # compaction and rebuilds (transaction-scoped, exclusive)
EXTERNAL_ID_LOCK_KEY = 727_002  # per external customer id (two-key form)
INGEST_LOCK_KEY = 727_003  # ingest transactions (shared) vs. the compaction barrier

NUMERIC_RE = r"^\s*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*$"
WATERMARK_SQL = "COALESCE((SELECT seq FROM metering_rollupwatermark WHERE id = 1), 0)"


def literal(text: str) -> str:
    """A SQL string literal for statements executed with parameters (so % is doubled);
    standard_conforming_strings is on since PostgreSQL 9.1."""
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


@dataclass(frozen=True)
class MeterSQL:
    """SQL expressions over an event row `s` for one meter: its value, group and validity."""

    num: str  # numeric value (sum/min/max/avg/latest) or NULL
    uval: str  # type-tagged canonical value (unique_count) or NULL
    valued: str  # the event has a usable value (else it is a skipped event)
    grp: str  # {group name: text of the property}


def meter_sql(meter) -> MeterSQL:
    prop = literal(meter.value_property or "")
    typ = f"jsonb_typeof(s.properties -> {prop})"
    text = f"(s.properties ->> {prop})"
    num = uval = "NULL"
    if meter.aggregation in ("sum", "min", "max", "avg", "latest"):
        num = (f"(CASE {typ} WHEN 'number' THEN {text}::numeric WHEN 'string' THEN CASE WHEN "
               f"{text} ~ '{NUMERIC_RE}' THEN btrim({text})::numeric END END)")
        valued = f"({num} IS NOT NULL)"
    elif meter.aggregation == "unique_count":
        uval = (f"(CASE {typ} WHEN 'number' THEN 'n:' || trim_scale({text}::numeric)::text "
                f"WHEN 'string' THEN 's:' || {text} WHEN 'boolean' THEN 'b:' || {text} END)")
        valued = f"({uval} IS NOT NULL)"
    else:
        valued = "true"
    if meter.group_by:
        pairs = ", ".join(f"{literal(name)}, s.properties ->> {literal(prop_name)}"
                          for name, prop_name in sorted(meter.group_by.items()))
        grp = f"jsonb_build_object({pairs})"
    else:
        grp = "'{}'::jsonb"
    return MeterSQL(num=f"{num}::numeric", uval=f"{uval}::text", valued=valued, grp=grp)


_USAGE_CONFLICT = """
ON CONFLICT (meter_id, customer_id, size, bucket, grp_hash) DO UPDATE SET
    events = r.events + EXCLUDED.events,
    valued = r.valued + EXCLUDED.valued,
    total = COALESCE(r.total + EXCLUDED.total, r.total, EXCLUDED.total),
    min = LEAST(r.min, EXCLUDED.min),
    max = GREATEST(r.max, EXCLUDED.max),
    latest_ts = CASE WHEN r.latest_ts IS NULL OR (EXCLUDED.latest_ts, EXCLUDED.latest_id)
                     > (r.latest_ts, r.latest_id) THEN EXCLUDED.latest_ts ELSE r.latest_ts END,
    latest_id = CASE WHEN r.latest_ts IS NULL OR (EXCLUDED.latest_ts, EXCLUDED.latest_id)
                     > (r.latest_ts, r.latest_id) THEN EXCLUDED.latest_id ELSE r.latest_id END,
    latest_value = CASE WHEN r.latest_ts IS NULL OR (EXCLUDED.latest_ts, EXCLUDED.latest_id)
                        > (r.latest_ts, r.latest_id) THEN EXCLUDED.latest_value
                        ELSE r.latest_value END"""
_USAGE_COLUMNS = """(meter_id, customer_id, size, bucket, grp, grp_hash, events, valued, total,
                      min, max, latest_ts, latest_id, latest_value)"""
_NEWEST = "ORDER BY {ts} DESC, {id} DESC) FILTER (WHERE {ts} IS NOT NULL))[1]"


def _fold_sql(meter, where: str) -> list[str]:
    """Statements adding the counted events of `meter` matching `where` (over metering_event s)
    to its hour rollups, and those hours to the day rollups (one statement each)."""
    expr = meter_sql(meter)
    meter_id = literal(meter.pk)
    events = f"""
        SELECT s.customer_id, date_trunc('hour', s.timestamp, 'UTC') AS bucket,
               {expr.grp} AS grp, {expr.num} AS num, {expr.uval} AS uval,
               {expr.valued} AS valued, s.timestamp, s.event_id
        FROM metering_event AS s
        WHERE s.event_name = {literal(meter.event_name)} AND s.counted
              AND s.customer_id IS NOT NULL AND ({where})"""
    if meter.aggregation == "latest":
        newest = _NEWEST.format(ts="timestamp", id="event_id").replace(
            "IS NOT NULL", "IS NOT NULL AND num IS NOT NULL")
        latest = (f"max(timestamp) FILTER (WHERE num IS NOT NULL), "
                  f"(array_agg(event_id {newest}, (array_agg(num {newest}")
        day_newest = _NEWEST.format(ts="latest_ts", id="latest_id")
        day_latest = (f"max(latest_ts), (array_agg(latest_id {day_newest}, "
                      f"(array_agg(latest_value {day_newest}")
    else:
        latest = day_latest = "NULL::timestamptz, NULL, NULL::numeric"
    statements = [f"""
WITH hourly AS MATERIALIZED (
    SELECT customer_id, bucket, grp, md5(grp::text)::uuid AS grp_hash, count(*) AS events,
           count(*) FILTER (WHERE valued) AS valued, sum(num) AS total, min(num) AS min,
           max(num) AS max, {latest}
    FROM ({events}) AS e
    GROUP BY customer_id, bucket, grp
), hours AS (
    INSERT INTO metering_usagerollup AS r {_USAGE_COLUMNS}
    SELECT {meter_id}, customer_id, {HOUR}, bucket, grp, grp_hash, events, valued, total, min,
           max, latest_ts, latest_id, latest_value
    FROM hourly AS h (customer_id, bucket, grp, grp_hash, events, valued, total, min, max,
                      latest_ts, latest_id, latest_value)
    {_USAGE_CONFLICT}
)
INSERT INTO metering_usagerollup AS r {_USAGE_COLUMNS}
SELECT {meter_id}, customer_id, {DAY}, date_trunc('day', bucket, 'UTC'), grp, grp_hash,
       sum(events), sum(valued), sum(total), min(min), max(max), {day_latest}
FROM hourly AS h (customer_id, bucket, grp, grp_hash, events, valued, total, min, max,
                  latest_ts, latest_id, latest_value)
GROUP BY customer_id, date_trunc('day', bucket, 'UTC'), grp, grp_hash
{_USAGE_CONFLICT}"""]
    if meter.aggregation == "unique_count":
        conflict = """ON CONFLICT (meter_id, customer_id, size, bucket, grp_hash, value_hash)
            DO UPDATE SET events = u.events + EXCLUDED.events"""
        columns = ("(meter_id, customer_id, size, bucket, grp, grp_hash, value_key, value_hash, "
                   "events)")
        statements.append(f"""
WITH hourly AS MATERIALIZED (
    SELECT customer_id, bucket, grp, md5(grp::text)::uuid AS grp_hash, uval,
           md5(uval)::uuid AS value_hash, count(*) AS events
    FROM ({events}) AS e
    WHERE uval IS NOT NULL
    GROUP BY customer_id, bucket, grp, uval
), hours AS (
    INSERT INTO metering_uniquevaluerollup AS u {columns}
    SELECT {meter_id}, customer_id, {HOUR}, bucket, grp, grp_hash, uval, value_hash, events
    FROM hourly
    {conflict}
)
INSERT INTO metering_uniquevaluerollup AS u {columns}
SELECT {meter_id}, customer_id, {DAY}, date_trunc('day', bucket, 'UTC'), grp, grp_hash, uval,
       value_hash, sum(events)
FROM hourly
GROUP BY customer_id, date_trunc('day', bucket, 'UTC'), grp, grp_hash, uval, value_hash
{conflict}""")
    return statements


def _meters(meter_ids=None):
    from metering.models import Meter

    meters = Meter.objects.order_by("pk")
    return list(meters if meter_ids is None else meters.filter(pk__in=meter_ids))


# --- locks -----------------------------------------------------------------------------------

def lock_writer() -> None:
    """Serialises compaction and rebuilds (the rollups and W change together)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [WRITER_LOCK_KEY])


def lock_external_ids_shared(cursor, external_ids: list[str]) -> None:
    """Ingestion of events for unknown external ids holds these; creating the customer takes
    its id exclusively, so no event misses its attribution."""
    cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, hashtext(x)) "
                   "FROM (SELECT DISTINCT unnest(%s::text[]) AS x ORDER BY 1) AS ids",
                   [EXTERNAL_ID_LOCK_KEY, sorted(external_ids)])


def lock_external_id_exclusive(external_id: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                       [EXTERNAL_ID_LOCK_KEY, external_id])


# --- compaction ------------------------------------------------------------------------------

def ingest_batch_number(cursor) -> int:
    """Hold the ingest lock (shared, until commit) and draw this transaction's batch number."""
    cursor.execute("SELECT pg_advisory_xact_lock_shared(%s), nextval(%s)",
                   [INGEST_LOCK_KEY, INGEST_SEQUENCE])
    return cursor.fetchone()[1]


def compact(*, wait: bool = True) -> int | None:
    """Fold the tail into the rollups and advance W. Returns the number of events folded (None
    when another compaction holds the lock and wait=False). Idempotent, safe concurrently."""
    with transaction.atomic(), connection.cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [WRITER_LOCK_KEY])
        else:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [WRITER_LOCK_KEY])
            if not cursor.fetchone()[0]:
                return None
        cursor.execute("INSERT INTO metering_rollupwatermark (id, seq, compacted_at) "
                       "VALUES (1, 0, now()) ON CONFLICT (id) DO NOTHING")
        cursor.execute("SELECT seq FROM metering_rollupwatermark WHERE id = 1")
        old = cursor.fetchone()[0]
        # Barrier: once we hold the ingest lock, every batch numbered below N has finished.
        cursor.execute("SELECT pg_advisory_lock(%s)", [INGEST_LOCK_KEY])
        try:
            cursor.execute("SELECT nextval(%s)", [INGEST_SEQUENCE])
            new = cursor.fetchone()[0]
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [INGEST_LOCK_KEY])
        params = {"old": old, "new": new}
        where = "s.ins_seq >= %(old)s AND s.ins_seq < %(new)s"
        cursor.execute(f"SELECT count(*) FROM metering_event AS s WHERE {where}", params)
        folded = cursor.fetchone()[0]
        if folded:
            cursor.execute("SET LOCAL work_mem = '256MB'")  # hash aggregation of large folds
            # The tail is young, so its statistics are stale and the planner expects a handful
            # of rows: it sorts for the GROUP BY where hashing is ~10% cheaper (measured).
            cursor.execute("SET LOCAL enable_sort = off")
            for meter in _meters():
                for statement in _fold_sql(meter, where):
                    cursor.execute(statement, params)
        cursor.execute("UPDATE metering_rollupwatermark SET seq = %(new)s, compacted_at = now() "
                       "WHERE id = 1", params)
    return folded


_last_compaction = 0.0


def compact_soon() -> None:
    """After an ingest commits: compact at most every METERING_COMPACT_INTERVAL seconds per
    process, without waiting for another compaction. Failures are logged, never raised."""
    global _last_compaction
    interval = getattr(settings, "METERING_COMPACT_INTERVAL", 2.0)
    now = time.monotonic()
    if now - _last_compaction < interval:
        return
    _last_compaction = now
    try:
        compact(wait=False)
    except Exception:  # a query must not fail because housekeeping did
        logger.exception("usage rollup compaction failed")


# --- rebuilds --------------------------------------------------------------------------------

def _day_floor(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def rebuild(*, customer_ids: list[str] | None = None, meter_ids: list[str] | None = None,
            start=None, end=None) -> None:
    """Recompute the rollups of the given customers/meters/time from counted events below W.

    The range is widened to whole UTC days (None: all time). Takes the writer lock.
    """
    lock_writer()
    if start is not None:
        start = _day_floor(start)
    if end is not None:
        end = _day_floor(end) if _day_floor(end) == end else _day_floor(end) + timedelta(days=1)
    meters = _meters(meter_ids)
    if not meters:
        return
    conditions, params = [], {"meters": [m.pk for m in meters]}
    if customer_ids is not None:
        conditions.append("{t}customer_id = ANY(%(customers)s)")
        params["customers"] = list(customer_ids)
    if start is not None:
        conditions.append("{t}{bucket} >= %(start)s")
        params["start"] = start
    if end is not None:
        conditions.append("{t}{bucket} < %(end)s")
        params["end"] = end
    delete_where = " AND ".join(["meter_id = ANY(%(meters)s)"] + [
        c.format(t="", bucket="bucket") for c in conditions])
    event_where = " AND ".join([f"s.ins_seq < {WATERMARK_SQL}"] + [
        c.format(t="s.", bucket="timestamp") for c in conditions])
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '256MB'")
        for table in ("metering_usagerollup", "metering_uniquevaluerollup"):
            cursor.execute(f"DELETE FROM {table} WHERE {delete_where}", params)
        for meter in meters:
            for statement in _fold_sql(meter, event_where):
                cursor.execute(statement, params)
