"""Invoicing benchmark: close one billing period for many customers, and invoice previews.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/anything .venv/bin/python bench/invoicing.py

Uses its own database (`h_invoicing_bench` on the same server, or BENCH_DATABASE_URL),
recreated and migrated here. Setup (not timed): a monthly USD plan with 3 pricing rules
(per_unit, graduated, package), BENCH_CUSTOMERS customers (default 10,000) and
BENCH_EVENTS_PER_METER events per customer and meter (default 2) ingested through metering.
Then, timed, with `close_billing_periods` split over BENCH_WORKERS worker processes (default 2)
and a grace period of one day:
  1. October closed in one pass after the grace period (each invoice created and issued);
  2. November closed the usual way: drafts at period end, issued by the run a day later;
and POST /v1/invoices/preview for one customer (p50/p95 over BENCH_PREVIEWS, default 200).
"""

import multiprocessing
import os
import statistics
import time
from datetime import UTC, datetime, timedelta

import _common  # noqa: E402 - also puts the project on sys.path

CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", 10_000))
EVENTS_PER_METER = int(os.environ.get("BENCH_EVENTS_PER_METER", 2))
WORKERS = int(os.environ.get("BENCH_WORKERS", 2))
PREVIEWS = int(os.environ.get("BENCH_PREVIEWS", 200))
PERIOD_START = datetime(2026, 10, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 11, 1, tzinfo=UTC)
NEXT_END = datetime(2026, 12, 1, tzinfo=UTC)
GRACE = timedelta(days=1)


def setup_django() -> None:
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    _common.setup_django("h_invoicing_bench")


def create_world() -> list[str]:
    from decimal import Decimal

    from billing_project.api import format_timestamp
    from invoicing import services
    from ledgers.models import Customer
    from metering import services as metering

    actor = "bench"
    meters = [
        metering.meter_create(slug="b_calls", name="calls", event_name="b_call",
                              aggregation="count", actor=actor),
        metering.meter_create(slug="b_storage", name="storage", event_name="b_storage",
                              aggregation="sum", value_property="gb", actor=actor),
        metering.meter_create(slug="b_seats", name="seats", event_name="b_seat",
                              aggregation="max", value_property="seats", actor=actor),
    ]
    plan = services.plan_create(actor=actor, key="bench", name="Bench", currency="USD")
    services.pricing_rule_create(actor=actor, name="calls", meter_id=meters[0].pk,
                                 plan_id=plan.pk, currency="USD", model="per_unit",
                                 unit_amount=Decimal("0.0125"))
    services.pricing_rule_create(
        actor=actor, name="storage", meter_id=meters[1].pk, plan_id=plan.pk, currency="USD",
        model="graduated", tiers=[{"up_to": 100, "unit_amount": Decimal("0.10")},
                                  {"up_to": None, "unit_amount": Decimal("0.05"),
                                   "flat_amount": 5}])
    services.pricing_rule_create(actor=actor, name="seats", meter_id=meters[2].pk,
                                 plan_id=plan.pk, currency="USD", model="package",
                                 unit_amount=Decimal("7"), package_size=3)
    customers = Customer.objects.bulk_create([
        Customer(name=f"Bench {i}", email=f"b{i}@example.com", external_customer_id=f"b-{i}",
                 currency="USD", plan_id=plan.pk, billing_anchor=PERIOD_START,
                 created_at=PERIOD_START)
        for i in range(CUSTOMERS)], batch_size=2000)
    ids = [c.pk for c in customers]
    events = []
    started = time.perf_counter()
    for index, customer_id in enumerate(ids):
        for n in range(EVENTS_PER_METER * 2):  # October and November
            month = PERIOD_START if n < EVENTS_PER_METER else PERIOD_END
            ts = month + timedelta(days=(index + n) % 28, seconds=index % 86_000)
            stamp = format_timestamp(ts)
            events += [
                {"idempotency_key": f"c-{customer_id}-{n}", "event_name": "b_call",
                 "timestamp": stamp, "customer_id": customer_id, "properties": {}},
                {"idempotency_key": f"s-{customer_id}-{n}", "event_name": "b_storage",
                 "timestamp": stamp, "customer_id": customer_id,
                 "properties": {"gb": (index * 7 + n) % 300}},
                {"idempotency_key": f"p-{customer_id}-{n}", "event_name": "b_seat",
                 "timestamp": stamp, "customer_id": customer_id,
                 "properties": {"seats": 1 + (index + n) % 12}},
            ]
    events.sort(key=lambda e: e["timestamp"])
    by_day: dict[str, list[dict]] = {}
    for event in events:  # one day per batch: within the ingestion grace period
        by_day.setdefault(event["timestamp"][:10], []).append(event)
    for day_events in by_day.values():
        for start in range(0, len(day_events), 1000):
            batch = day_events[start:start + 1000]
            now = datetime.fromisoformat(batch[-1]["timestamp"].replace("Z", "+00:00"))
            result = metering.events_ingest(events=batch, actor=actor,
                                            now=now + timedelta(seconds=1))
            assert not result.validation_failed, result.validation_failed[:3]
    print(f"setup: {CUSTOMERS} customers, {len(events)} events ingested in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    return ids


def close_shard(args) -> dict:
    from django.db import connection

    from invoicing import billing

    customer_ids, as_of = args
    connection.close()
    try:
        return billing.close_billing_periods(as_of=as_of, grace=GRACE,
                                             customer_ids=customer_ids)
    finally:
        connection.close()


def run_close(ids: list[str], as_of: datetime, label: str, *, created: int,
              issued: int) -> float:
    from django.db import connections

    connections.close_all()
    shards = [(ids[i::WORKERS], as_of) for i in range(WORKERS)]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(WORKERS) as pool:
        results = pool.map(close_shard, shards)
    elapsed = time.perf_counter() - started
    total = {key: sum(r[key] for r in results) for key in results[0]}
    print(f"{label}: {total} with {WORKERS} workers in {elapsed:.1f} s "
          f"({CUSTOMERS / elapsed:.0f} customers/s)", flush=True)
    assert total["created"] == created and total["issued"] == issued, total
    return elapsed


def bench_close(ids: list[str]) -> float:
    one_pass = run_close(ids, PERIOD_END + GRACE + timedelta(hours=1),
                         "October, one pass after grace (create + issue)",
                         created=CUSTOMERS, issued=CUSTOMERS)
    drafts = run_close(ids, NEXT_END + timedelta(hours=1), "November at period end (drafts)",
                       created=CUSTOMERS, issued=0)
    issue = run_close(ids, NEXT_END + GRACE + timedelta(hours=1),
                      "November after grace (issue, repriced)", created=0, issued=CUSTOMERS)
    print(f"November in two passes: {drafts + issue:.1f} s", flush=True)
    return max(one_pass, drafts + issue)


def bench_preview(ids: list[str]) -> tuple[float, float]:
    import json

    from django.test import Client

    from ledgers.services import api_key_create

    _, raw = api_key_create(name="bench")
    client = Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    samples = []
    for index in range(PREVIEWS + 10):
        customer_id = ids[(index * 7919) % len(ids)]
        body = json.dumps({"customer_id": customer_id,
                           "timeframe_start": "2026-10-01T00:00:00Z",
                           "timeframe_end": "2026-11-01T00:00:00Z"})
        started = time.perf_counter()
        response = client.post("/v1/invoices/preview", body, content_type="application/json",
                               **headers)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.content
        if index >= 10:  # warm-up
            samples.append(elapsed * 1000)
    samples.sort()
    p50 = statistics.median(samples)
    p95 = samples[int(len(samples) * 0.95) - 1]
    print(f"invoice preview: p50 {p50:.1f} ms, p95 {p95:.1f} ms over {len(samples)} requests",
          flush=True)
    return p50, p95


def main() -> None:
    setup_django()
    ids = create_world()
    elapsed = bench_close(ids)
    p50, _ = bench_preview(ids)
    print(f"targets: close <= 120 s -> {'OK' if elapsed <= 120 else 'MISSED'}; "
          f"preview p50 <= 30 ms -> {'OK' if p50 <= 30 else 'MISSED'}")


if __name__ == "__main__":
    main()
