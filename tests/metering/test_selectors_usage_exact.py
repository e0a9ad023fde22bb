"""Usage from rollups equals a plain Python answer over raw events, to the microsecond.

Random events (microsecond timestamps, numbers, numeric strings, junk, missing values) are
ingested for every aggregation; random [start, end) ranges, windows, time zones, group_by and
filters are compared with a reference computed from the events in Python, before and after
amendments, deprecations, and for a meter created after the events.
"""

import random
import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

import pytest

from billing_project.decimals import FRACTION_QUANTUM, normalize
from metering import rollups, selectors, services
from metering.models import Event, UsageRollup
from tests.ledgers.factories import CustomerFactory
from tests.metering.factories import MeterFactory, event, ingest

pytestmark = pytest.mark.django_db

BASE = datetime(2026, 3, 7, 5, 0, tzinfo=UTC)  # New York switches to DST on 8 March 07:00 UTC
SPAN = timedelta(days=2, hours=6)  # whole days, whole hours and partial hours in the ranges
NUMERIC = re.compile(r"^\s*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*$")
AGGREGATIONS = ["sum", "count", "unique_count", "max", "min", "avg", "latest"]


def numeric_value(value):
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    if isinstance(value, str) and NUMERIC.match(value):
        return Decimal(value.strip())
    return None


def unique_value(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, Decimal)):
        return ("n", Decimal(value))
    return ("s", value)


def group_text(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def reference(meter, events, *, customer, start, end, window, tz, group_by, filters):
    windows = selectors.usage_windows(start=start, end=end, window=window,
                                      window_time_zone=tz)
    rows = []
    for window_start, window_end in windows:
        groups = {}
        for ev in events:
            if not ev["counted"] or ev["name"] != meter.event_name:
                continue
            if ev["customer"] is None or (customer and ev["customer"] != customer.pk):
                continue
            if not window_start <= ev["ts"] < window_end:
                continue
            grp_all = {name: group_text(ev["props"].get(prop))
                       for name, prop in meter.group_by.items()}
            if any(grp_all.get(k) != v for k, v in filters.items()):
                continue
            key = tuple((name, grp_all[name]) for name in group_by)
            groups.setdefault(key, []).append(ev)
        if not groups and not group_by:
            groups[()] = []
        for key, members in sorted(groups.items(), key=lambda kv: str(kv[0])):
            rows.append((window_start, window_end, value_of(meter, members), dict(key)))
    return rows


def value_of(meter, members):
    prop = meter.value_property
    agg = meter.aggregation
    if agg == "count":
        return Decimal(len(members))
    if agg == "unique_count":
        return Decimal(len({unique_value(m["props"].get(prop)) for m in members}
                           - {None}))
    valued = [(m, numeric_value(m["props"].get(prop))) for m in members]
    valued = [(m, v) for m, v in valued if v is not None]
    if agg == "sum":
        return normalize(sum((v for _, v in valued), Decimal(0)))
    if not valued:
        return None
    if agg == "max":
        return normalize(max(v for _, v in valued))
    if agg == "min":
        return normalize(min(v for _, v in valued))
    if agg == "avg":
        total = sum(v for _, v in valued)
        return normalize((total / len(valued)).quantize(FRACTION_QUANTUM, ROUND_HALF_EVEN))
    newest = max(valued, key=lambda mv: (mv[0]["ts"], mv[0]["key"]))
    return normalize(newest[1])


def random_amount(rng):
    return rng.choice([
        rng.randint(-5, 100), Decimal(rng.randint(0, 10**6)) / 1000, f"{rng.randint(0, 99)}.5",
        " 7 ", "abc", None, True, Decimal("1.50"), "1e3", rng.randint(0, 3),
    ])


def random_events(rng, customers, count):
    events = []
    for index in range(count):
        ts = BASE + timedelta(microseconds=rng.randrange(int(SPAN.total_seconds() * 10**6)))
        if rng.random() < 0.05:  # several events at the exact same instant
            ts = BASE + timedelta(minutes=90)
        props = {}
        if rng.random() < 0.9:
            props["amount"] = random_amount(rng)
        if rng.random() < 0.8:
            props["region"] = rng.choice(["eu", "us", "apac"])
        if rng.random() < 0.9:
            props["user"] = rng.choice([1, "1", 2, "u2", Decimal("2.0"), True, "u3"])
        props = {k: v for k, v in props.items() if v is not None}
        customer = rng.choice(customers)
        events.append({"key": f"k{index:05d}", "customer": customer.pk, "ts": ts,
                       "name": rng.choice(["api_call", "api_call", "other"]), "props": props,
                       "counted": True})
    return events


def to_bodies(events):
    return [{"idempotency_key": ev["key"], "event_name": ev["name"],
             "timestamp": ev["ts"].isoformat(), "customer_id": ev["customer"],
             "properties": ev["props"]} for ev in events]


def ingest_in_time_order(bodies):
    """Batches of close timestamps, each ingested 'as of' its newest event (grace period)."""
    ordered = sorted(bodies, key=lambda b: b["timestamp"])
    for start in range(0, len(ordered), 10):
        batch = ordered[start:start + 10]
        as_of = datetime.fromisoformat(batch[-1]["timestamp"]) + timedelta(minutes=1)
        assert ingest(*batch, now=as_of).validation_failed == []


def random_range(rng):
    if rng.random() < 0.3:  # aligned on hours or days
        start = BASE + timedelta(hours=rng.randint(-6, 30))
        return start, start + timedelta(hours=rng.choice([1, 3, 19, 24, 48]))
    a = BASE + timedelta(microseconds=rng.randrange(-3600 * 10**6, int(SPAN.total_seconds()
                                                                       * 10**6)))
    length = rng.choice([timedelta(minutes=5), timedelta(hours=4), SPAN])
    b = a + timedelta(microseconds=rng.randrange(1, int(length.total_seconds() * 10**6)))
    return a, b


def compare(rng, meters, events, customers, rounds):
    for _ in range(rounds):
        meter = rng.choice(meters)
        start, end = random_range(rng)
        window = rng.choice([None, None, "minute", "hour", "day"])
        if window == "minute" and end - start > timedelta(hours=3):
            window = "hour"
        tz = rng.choice(["UTC", "Asia/Kolkata", "America/New_York"])
        group_by = rng.choice([(), ("region",)])
        filters = rng.choice([{}, {}, {"region": "eu"}])
        customer = rng.choice(customers + [None])
        got = selectors.usage(meter=meter, customer=customer, start=start, end=end,
                              window=window, window_time_zone=tz, group_by=group_by,
                              filters=filters)
        expected = reference(meter, events, customer=customer, start=start, end=end,
                             window=window, tz=tz, group_by=group_by, filters=filters)
        got_rows = [(r.window_start, r.window_end, r.value, r.group_by) for r in got]
        assert got_rows == expected, (meter.aggregation, start, end, window, tz, group_by,
                                      filters, customer)
        for row in got:
            assert row.customer_id == (customer.pk if customer else None)


@pytest.mark.django_db(transaction=True)  # compaction folds committed transactions only
@pytest.mark.parametrize(("seed", "scalar_raw_windows"), [(1, 8), (2, 8), (3, 8), (4, 0)],
                         ids=["seed1", "seed2", "seed3", "seed4-raw-windows-in-arrays"])
def test_usage_equals_raw_events(seed, scalar_raw_windows, settings, monkeypatch):
    """seed4: every raw window read through the statement's arrays (the form for more than
    MAX_SCALAR_RAW_WINDOWS of them), none with bounds of its own."""
    settings.METERING_COMPACT_INTERVAL = 10**9  # compact only where the test says so
    monkeypatch.setattr(selectors, "MAX_SCALAR_RAW_WINDOWS", scalar_raw_windows)
    rng = random.Random(seed)
    customers = [CustomerFactory(), CustomerFactory()]
    meters = [MeterFactory(aggregation=agg, value_property="user" if agg == "unique_count"
                           else "amount", group_by={"region": "region"})
              for agg in AGGREGATIONS]
    events = random_events(rng, customers, 500)
    bodies = to_bodies(events)
    ingest_in_time_order(bodies[:400])
    compare(rng, meters, events[:400], customers, 40)  # all in the tail
    assert rollups.compact() == 400
    assert UsageRollup.objects.exists()
    compare(rng, meters, events[:400], customers, 40)  # all folded

    # Amend and deprecate some events: rollups follow exactly.
    for ev in rng.sample(events[:400], 25):
        if rng.random() < 0.5:
            services.event_deprecate(event_id=ev["key"], actor="test", reason="test")
            ev["counted"] = False
        else:
            new_props = dict(ev["props"], amount=random_amount(rng))
            new_props = {k: v for k, v in new_props.items() if v is not None}
            new_name = rng.choice(["api_call", "other"])
            services.event_amend(event_id=ev["key"], event_name=new_name,
                                 properties=new_props, timestamp=ev["ts"],
                                 customer_id=ev["customer"], actor="test")
            ev["props"], ev["name"] = new_props, new_name
    compare(rng, meters, events[:400], customers, 40)

    # More events: rollups + tail together, then folded.
    ingest_in_time_order(bodies[400:])
    compare(rng, meters, events, customers, 40)
    assert rollups.compact() == 100
    compare(rng, meters, events, customers, 40)

    # A meter created after the events counts them.
    late = MeterFactory(aggregation="sum", value_property="amount",
                        group_by={"region": "region"})
    compare(rng, [late], events, customers, 15)


def test_usage_total_is_none_free_and_read_your_writes():
    customer = CustomerFactory()
    meter = MeterFactory(aggregation="max", value_property="amount")
    start, end = BASE, BASE + SPAN
    assert selectors.usage_total(meter=meter, customer=customer, start=start,
                                 end=end) == Decimal(0)
    ingest(event(customer, ts=BASE + timedelta(seconds=1, microseconds=7), amount="2.5"),
           now=BASE + timedelta(hours=1))
    assert selectors.usage_total(meter=meter, customer=customer, start=start,
                                 end=end) == Decimal("2.5")
    # Half-open: an event at exactly `end` is not in [start, end); one at `start` is.
    ts = BASE + timedelta(seconds=1, microseconds=7)
    assert selectors.usage_total(meter=meter, customer=customer, start=start, end=ts) == 0
    assert selectors.usage_total(meter=meter, customer=customer, start=ts,
                                 end=ts + timedelta(microseconds=1)) == Decimal("2.5")


def test_month_windows_in_customer_time_zone():
    customer = CustomerFactory()
    meter = MeterFactory(aggregation="count", value_property=None)
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    ingest(event(customer, ts=datetime(2026, 11, 30, 23, 30, tzinfo=UTC)),  # Dec 1 in Tokyo
           event(customer, ts=datetime(2026, 11, 30, 14, 59, tzinfo=UTC)),  # Nov 30 in Tokyo
           now=now)
    rows = selectors.usage(meter=meter, customer=customer,
                           start=datetime(2026, 10, 31, 15, tzinfo=UTC),
                           end=datetime(2026, 12, 31, 15, tzinfo=UTC), window="month",
                           window_time_zone="Asia/Tokyo")
    tokyo = ZoneInfo("Asia/Tokyo")
    assert [(r.window_start.astimezone(tokyo).date().isoformat(), r.value) for r in rows] == [
        ("2026-11-01", 1), ("2026-12-01", 1)]


def test_skipped_events_counted_per_meter():
    customer = CustomerFactory()
    meter = MeterFactory(aggregation="sum", value_property="amount")
    counter = MeterFactory(aggregation="count", value_property=None)
    unique = MeterFactory(aggregation="unique_count", value_property="amount")
    ingest(event(customer, ts=BASE, amount="x"), event(customer, ts=BASE, amount=3),
           event(customer, ts=BASE), event(customer, ts=BASE, amount=True), now=BASE)
    skipped = selectors.meter_skipped_events([meter, counter, unique])
    assert skipped == {meter.pk: 3, counter.pk: 0, unique.pk: 1}
    assert Event.objects.count() == 4
