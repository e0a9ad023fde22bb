"""Usage query benchmark: one customer's 30 daily windows at 100k and at 1M events.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/anything .venv/bin/python bench/usage_query.py

Uses its own database (`h_metering_bench_usage`, recreated). Events for 100 customers spread
over the last 30 days are bulk-loaded with COPY (stamped with one ingest batch number, as the
ingest path does) and folded into the rollups by the production compaction
(`metering.rollups.compact`). Then 200 queries (customers in turn) of `selectors.usage(...,
window="day")` for 30 days, timed in process, plus the same through the HTTP view (Django test
client), p50 and p99, at 100,000 and 1,000,000 events.
"""

import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from _common import percentile, setup_django

CUSTOMERS = 100
SIZES = [int(n) for n in os.environ.get("BENCH_SIZES", "100000,1000000").split(",")]
QUERIES = int(os.environ.get("BENCH_QUERIES", 200))
DB_NAME = "h_metering_bench_usage"
DAYS = 30


def load_events(count, offset, customer_ids, start):
    """COPY `count` events (keys from `offset`) into metering_event, as one ingest batch."""
    from django.db import connection, transaction

    from billing_project.api import json_dumps
    from metering import rollups

    rng = random.Random(offset)
    span = DAYS * 86400 * 10**6
    with transaction.atomic(), connection.cursor() as cursor:
        seq = rollups.ingest_batch_number(cursor)
        raw = connection.connection
        with raw.cursor().copy(
                "COPY metering_event (event_id, customer_id, external_customer_id, event_name, "
                "timestamp, properties, deprecated, counted, version, created_at, ins_seq) "
                "FROM STDIN") as copy:
            now = datetime.now(UTC)
            for index in range(offset, offset + count):
                customer = customer_ids[index % len(customer_ids)]
                ts = start + timedelta(microseconds=rng.randrange(span))
                props = {"tokens": rng.randint(1, 5000), "model": rng.choice(["s", "m", "l"]),
                         "user": f"u{rng.randint(1, 200)}"}
                copy.write_row((f"ev-{index:08d}", customer, None, "llm", ts,
                                json_dumps(props).decode(), False, True, 1, now, seq))


def time_queries(meter, customers, start):
    from django.test import Client

    from metering import selectors

    end = start + timedelta(days=DAYS)
    timings, http_timings = [], []
    client = Client()
    from ledgers.services import api_key_create

    _, raw = api_key_create(name="bench", scopes=["read"])
    for index in range(QUERIES):
        customer = customers[index % len(customers)]
        began = time.perf_counter()
        rows = selectors.usage(meter=meter, customer=customer, start=start, end=end,
                               window="day")
        timings.append((time.perf_counter() - began) * 1000)
        assert len(rows) == DAYS
    for index in range(QUERIES):
        customer = customers[index % len(customers)]
        began = time.perf_counter()
        response = client.get(f"/v1/meters/{meter.pk}/usage", {
            "customer_id": customer.pk, "timeframe_start": start.isoformat(),
            "timeframe_end": end.isoformat(), "window_size": "day"},
            HTTP_AUTHORIZATION=f"Bearer {raw}")
        http_timings.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200 and len(response.json()["data"]) == DAYS
    return timings, http_timings


def main():
    setup_django(DB_NAME)
    from django.db import connection

    from ledgers.models import Customer
    from metering import rollups, services

    Customer.objects.bulk_create([
        Customer(name=f"C{i}", email=f"c{i}@bench.example", external_customer_id=f"c{i}")
        for i in range(CUSTOMERS)])
    customers = list(Customer.objects.order_by("pk"))
    customer_ids = [c.pk for c in customers]
    meters = [
        services.meter_create(actor="bench", slug="tokens", name="Tokens", event_name="llm",
                              aggregation="sum", value_property="tokens",
                              group_by={"model": "model"}),
        services.meter_create(actor="bench", slug="users", name="Users", event_name="llm",
                              aggregation="unique_count", value_property="user"),
    ]
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=DAYS - 1)
    loaded = 0
    results = {}
    for size in SIZES:
        began = time.perf_counter()
        load_events(size - loaded, loaded, customer_ids, start)
        copied = time.perf_counter() - began
        folded = rollups.compact()
        load_time = time.perf_counter() - began
        with connection.cursor() as cursor:  # what autovacuum does after a bulk load
            for table in ("metering_event", "metering_usagerollup",
                          "metering_uniquevaluerollup"):
                cursor.execute(f"VACUUM ANALYZE {table}")
        loaded = size
        print(f"{size:,} events: COPY {copied:.1f} s, compaction of {folded:,} events "
              f"{load_time - copied:.1f} s")
        for meter in meters:
            timings, http_timings = time_queries(meter, customers, start)
            results[(size, meter.slug)] = statistics.median(timings)
            print(f"  {meter.slug} ({meter.aggregation}), 30 daily windows, {QUERIES} queries: "
                  f"selector p50 {statistics.median(timings):.2f} ms, "
                  f"p99 {percentile(timings, 0.99):.2f} ms; HTTP p50 "
                  f"{statistics.median(http_timings):.2f} ms, "
                  f"p99 {percentile(http_timings, 0.99):.2f} ms")
    if len(SIZES) >= 2:
        for meter in meters:
            ratio = results[(SIZES[-1], meter.slug)] / results[(SIZES[0], meter.slug)]
            print(f"p50({SIZES[-1]:,}) / p50({SIZES[0]:,}) for {meter.slug}: {ratio:.2f}")


if __name__ == "__main__":
    main()
