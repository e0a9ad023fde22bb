from datetime import timedelta

from django.db import connection, transaction

from billing_project.jobs import job
from metering import rollups
from metering.models import DAY, HOUR

CHECK_HOURS = 3


@job("verify_usage_rollups", every_seconds=3600,
     description="Recomputes the last hours' usage rollups from raw events and repairs drift.")
def verify_usage_rollups(*, as_of) -> dict:
    """Compares the event counts of the hour and day rollups touching the last CHECK_HOURS
    hours before as_of with the folded raw events (below the watermark); rebuilds the days that
    differ. Idempotent; concurrent runs serialise on the rollup writer lock."""
    end = as_of.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=CHECK_HOURS + 1)
    day_start = start.replace(hour=0)
    day_end = end.replace(hour=0) + timedelta(days=1)
    with transaction.atomic():
        rollups.lock_writer()
        with connection.cursor() as cursor:
            cursor.execute(f"""
                WITH raw AS (
                    SELECT m.id AS meter_id, s.customer_id, sz.size,
                           date_trunc(CASE sz.size WHEN {HOUR} THEN 'hour' ELSE 'day' END,
                                      s.timestamp, 'UTC') AS bucket, count(*) AS n
                    FROM metering_event s JOIN metering_meter m ON m.event_name = s.event_name
                    CROSS JOIN (VALUES ({HOUR}), ({DAY})) AS sz(size)
                    WHERE s.counted AND s.customer_id IS NOT NULL
                      AND s.timestamp >= %(day_start)s AND s.timestamp < %(day_end)s
                      AND s.ins_seq < {rollups.WATERMARK_SQL}
                    GROUP BY 1, 2, 3, 4
                ), rolled AS (
                    SELECT meter_id, customer_id, size, bucket, sum(events) AS n
                    FROM metering_usagerollup
                    WHERE bucket >= %(day_start)s AND bucket < %(day_end)s
                    GROUP BY 1, 2, 3, 4
                )
                SELECT DISTINCT COALESCE(raw.customer_id, rolled.customer_id),
                       date_trunc('day', COALESCE(raw.bucket, rolled.bucket), 'UTC')
                FROM raw FULL JOIN rolled USING (meter_id, customer_id, size, bucket)
                WHERE raw.n IS DISTINCT FROM rolled.n
                  AND (COALESCE(raw.size, rolled.size) = {DAY}
                       OR COALESCE(raw.bucket, rolled.bucket) >= %(start)s)""",
                           {"start": start, "day_start": day_start, "day_end": day_end})
            drift = cursor.fetchall()
        for customer_id, day in drift:
            rollups.rebuild(customer_ids=[customer_id], start=day, end=day + timedelta(days=1))
    return {"hours_checked": CHECK_HOURS + 1, "repaired_days": len(drift)}


@job("compact_usage_rollups", every_seconds=60,
     description="Folds recently ingested events into the usage rollups (ingestion also does "
                 "this after each commit; this is the safety net).")
def compact_usage_rollups(*, as_of) -> dict:
    return {"folded": rollups.compact(wait=True) or 0}
