"""Ingestion benchmark: POST /v1/ingest through gunicorn vs. the raw COPY ceiling.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/anything .venv/bin/python bench/ingest.py

Uses its own database (`h_metering_bench_ingest`, recreated). 200,000 events for 1,000
customers in batches of 500, sent by BENCH_CLIENTS (4) concurrent HTTP clients to gunicorn
(BENCH_WORKERS, 2) with three meters on the event name (sum with group_by, count,
unique_count), so rollups are maintained during the run. Then the same rows through the best
raw path: psycopg COPY into a temporary staging table and INSERT ... SELECT ... ON CONFLICT DO
NOTHING into a bare table with the same unique key.
"""

import http.client
import json
import os
import queue
import random
import threading
import time
from datetime import UTC, datetime, timedelta

from _common import Gunicorn, postgres_cpu_seconds, setup_django

EVENTS = int(os.environ.get("BENCH_EVENTS", 200_000))
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", 1_000))
BATCH = 500
CLIENTS = int(os.environ.get("BENCH_CLIENTS", 4))
WORKERS = int(os.environ.get("BENCH_WORKERS", 2))
METERS = int(os.environ.get("BENCH_METERS", 3))  # 2: tokens (sum by model) and calls (count)
DB_NAME = "h_metering_bench_ingest"


def make_events(customer_ids, now):
    rng = random.Random(7)
    events = []
    for index in range(EVENTS):
        ts = now - timedelta(microseconds=rng.randrange(50 * 60 * 10**6))
        events.append({
            "idempotency_key": f"bench-{index:07d}", "event_name": "llm_completion",
            "timestamp": ts.isoformat().replace("+00:00", "Z"),
            "customer_id": customer_ids[index % len(customer_ids)],
            "properties": {"tokens": rng.randint(1, 5000),
                           "model": rng.choice(["small", "medium", "large"]),
                           "user_id": f"u{rng.randint(1, 50)}"},
        })
    return events


def send_all(port, raw_key, bodies):
    work = queue.Queue()
    for body in bodies:
        work.put(body)
    errors = []

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        headers = {"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"}
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                return
            try:
                conn.request("POST", "/v1/ingest", body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                if response.status != 200:
                    errors.append((response.status, payload[:300]))
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                work.put(body)  # retry: ingestion is idempotent

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]}")


def raw_ceiling(events, customer_ids):
    """COPY into a temporary staging table, then INSERT ... ON CONFLICT DO NOTHING."""
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    dsn = f"host={db['HOST']} port={db['PORT'] or 5432} dbname={db['NAME']} user={db['USER']}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS raw_event")
        conn.execute("CREATE TABLE raw_event (event_id varchar(256) PRIMARY KEY, "
                     "customer_id varchar(40), event_name varchar(255), "
                     "timestamp timestamptz, properties jsonb)")
    rows = [(e["idempotency_key"], e["customer_id"], e["event_name"], e["timestamp"],
             json.dumps(e["properties"])) for e in events]
    shares = [rows[i::CLIENTS] for i in range(CLIENTS)]

    def load(share):
        with psycopg.connect(dsn) as conn:
            for start in range(0, len(share), BATCH):
                with conn.transaction():
                    conn.execute("CREATE TEMP TABLE staging (LIKE raw_event) ON COMMIT DROP")
                    with conn.cursor().copy("COPY staging FROM STDIN") as copy:
                        for row in share[start:start + BATCH]:
                            copy.write_row(row)
                    conn.execute("INSERT INTO raw_event SELECT * FROM staging "
                                 "ORDER BY event_id ON CONFLICT DO NOTHING")

    threads = [threading.Thread(target=load, args=(share,)) for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    with psycopg.connect(dsn) as conn:
        count = conn.execute("SELECT count(*) FROM raw_event").fetchone()[0]
    assert count == len(rows), count
    return elapsed


def main():
    url = setup_django(DB_NAME)
    from django.db import connection

    from ledgers.models import Customer
    from ledgers.services import api_key_create
    from metering import selectors, services
    from metering.models import Event

    Customer.objects.bulk_create([
        Customer(name=f"C{i}", email=f"c{i}@bench.example", external_customer_id=f"c{i}")
        for i in range(CUSTOMERS)])
    customer_ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True))
    services.meter_create(actor="bench", slug="tokens", name="Tokens",
                          event_name="llm_completion", aggregation="sum",
                          value_property="tokens", group_by={"model": "model"})
    services.meter_create(actor="bench", slug="calls", name="Calls",
                          event_name="llm_completion", aggregation="count")
    if METERS >= 3:
        services.meter_create(actor="bench", slug="users", name="Users",
                              event_name="llm_completion", aggregation="unique_count",
                              value_property="user_id")
    _, raw_key = api_key_create(name="bench", scopes=["ingest"])
    connection.close()

    now = datetime.now(UTC)
    events = make_events(customer_ids, now)
    bodies = [json.dumps({"events": events[i:i + BATCH]}).encode()
              for i in range(0, len(events), BATCH)]
    from metering import rollups

    load_before = os.getloadavg()[0]
    server = Gunicorn(database_url=url, workers=WORKERS)
    try:
        started = time.perf_counter()
        send_all(server.port, raw_key, bodies)
        sent = time.perf_counter() - started
        folded_last = rollups.compact()  # the clock stops once every event is in the rollups
        elapsed = time.perf_counter() - started
        server_cpu = server.cpu_seconds()
        pg_cpu = postgres_cpu_seconds(DB_NAME)
        connection.close()
    finally:
        server.stop()
    rate = EVENTS / elapsed
    assert Event.objects.count() == EVENTS
    tokens = selectors.meter_get("tokens")
    expected = sum(e["properties"]["tokens"] for e in events
                   if e["customer_id"] == customer_ids[0])
    got = selectors.usage_total(meter=tokens, customer=Customer.objects.get(pk=customer_ids[0]),
                                start=now - timedelta(hours=2), end=now + timedelta(hours=1))
    assert got == expected, (got, expected)

    raw_elapsed = raw_ceiling(events, customer_ids)
    raw_rate = EVENTS / raw_elapsed
    print(f"ingest: {EVENTS:,} events, {CUSTOMERS:,} customers, batches of {BATCH}, "
          f"{CLIENTS} clients, gunicorn {WORKERS} workers, {METERS} meters (rollups included)")
    print(f"  end to end: {elapsed:.2f} s = {rate:,.0f} events/s (requests done after "
          f"{sent:.2f} s, then {folded_last:,} events folded into rollups); "
          f"server peak RSS {server.peak_rss / 2**20:,.0f} MiB")
    print(f"  CPU: gunicorn {server_cpu:.1f} s + PostgreSQL backends {pg_cpu:.1f} s = "
          f"{(server_cpu + pg_cpu) / EVENTS * 1e6:.0f} us per event; load average before the "
          f"run {load_before:.1f} (other processes share these 2 cores)")
    print(f"  raw COPY + INSERT ON CONFLICT ceiling: {raw_elapsed:.2f} s = "
          f"{raw_rate:,.0f} events/s; ratio {rate / raw_rate:.2f}")


if __name__ == "__main__":
    main()
