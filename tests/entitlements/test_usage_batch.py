"""metering.usage_batch.usage_totals (one usage query for many ranges) against metering's own
usage_total, range by range, for random ranges over random events, in the tail and folded."""

import random
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine

from billing_project.errors import InvalidInput
from entitlements import selectors as ent_selectors
from entitlements.models import BalanceSnapshot, Entitlement
from metering import rollups, selectors, services
from metering.usage_batch import usage_totals
from tests.entitlements.factories import FeatureFactory
from tests.entitlements.test_metering_integration import _ingest_all
from tests.entitlements.test_services_value import CASES, build
from tests.ledgers.factories import CustomerFactory
from tests.metering.factories import MeterFactory, event, ingest
from tests.metering.test_selectors_usage_exact import (
    AGGREGATIONS,
    BASE,
    SPAN,
    ingest_in_time_order,
    random_amount,
    random_events,
    random_range,
    to_bodies,
)


def _compare(rng, meters, customers, rounds, now=None):
    """``now``: ranges end around it (as the value endpoint's, which end now)."""
    for _ in range(rounds):
        meter = rng.choice(meters)
        customer = rng.choice(customers + [None])
        filters = rng.choice([None, {}, {"region": "eu"}])
        ranges = [random_range(rng) for _ in range(rng.randint(1, 8))]
        if now is not None:
            ends = [now + timedelta(seconds=rng.randint(-1200, 1200)) * rng.randint(0, 1)
                    for _ in range(rng.randint(1, 4))]
            ranges = [(end - timedelta(seconds=rng.randint(1, 40_000)), end) for end in ends]
        if rng.random() < 0.3:  # contiguous pieces, as the segments of a burn
            cuts = sorted({t for r in ranges for t in r})
            ranges = list(zip(cuts[:-1], cuts[1:], strict=True))
        if rng.random() < 0.2:
            ranges.append(ranges[0])  # the same range twice
        got = usage_totals(meter=meter, customer=customer, ranges=ranges, filters=filters)
        expected = [selectors.usage_total(meter=meter, customer=customer, start=s, end=e,
                                          filters=filters) for s, e in ranges]
        assert got == expected, (meter.aggregation, customer, filters, ranges)
        assert [str(v) for v in got] == [str(v) for v in expected]  # same digits too
        assert all(isinstance(v, Decimal) for v in got)


@pytest.mark.django_db(transaction=True)  # compaction folds committed transactions only
@pytest.mark.parametrize(("seed", "scalar_raw_windows"), [(1, 8), (2, 8), (3, 0)],
                         ids=["seed1", "seed2", "seed3-raw-windows-in-arrays"])
def test_usage_totals_equal_usage_total_per_range(seed, scalar_raw_windows, settings,
                                                  monkeypatch):
    """Sum, count and avg ranges read long raw edges as their hour minus the rest of it
    (split_range_signed); usage_total reads them raw. seed3: every raw window in the
    statement's arrays (the form for many raw windows), none with its own bounds."""
    settings.METERING_COMPACT_INTERVAL = 10**9  # compact only where the test says so
    monkeypatch.setattr(selectors, "MAX_SCALAR_RAW_WINDOWS", scalar_raw_windows)
    rng = random.Random(seed)
    customers = [CustomerFactory(), CustomerFactory()]
    meters = [MeterFactory(aggregation=agg, value_property="user" if agg == "unique_count"
                           else "amount", group_by={"region": "region"})
              for agg in AGGREGATIONS]
    events = random_events(rng, customers, 300)
    bodies = to_bodies(events)
    ingest_in_time_order(bodies[:200])
    _compare(rng, meters, customers, 25)  # all in the tail
    rollups.compact()
    _compare(rng, meters, customers, 25)  # all folded
    for ev in rng.sample(events[:200], 20):  # amended and deprecated after folding
        if rng.random() < 0.5:
            services.event_deprecate(event_id=ev["key"], actor="test", reason="test")
        else:
            props = {k: v for k, v in dict(ev["props"], amount=random_amount(rng)).items()
                     if v is not None}
            services.event_amend(event_id=ev["key"], event_name=ev["name"], properties=props,
                                 timestamp=ev["ts"], customer_id=ev["customer"], actor="test")
    _compare(rng, meters, customers, 25)
    ingest_in_time_order(bodies[200:])
    _compare(rng, meters, customers, 25)  # rollups and tail together
    # "now" inside the events' span: edges reaching it are read as their hour minus what
    # follows, and events after now (here: plenty) still count exactly
    now = BASE + SPAN / 2 + timedelta(minutes=23, seconds=17)  # not on an hour
    with time_machine.travel(now, tick=False):
        _compare(rng, meters, customers, 25)
        _compare(rng, meters, customers, 25, now=now)
    # an old (lower) watermark hint changes nothing: the statement re-reads the watermark
    meter, customer = meters[0], customers[0]
    ranges = [random_range(rng) for _ in range(5)]
    assert usage_totals(meter=meter, customer=customer, ranges=ranges, tail_hint=0) == \
        usage_totals(meter=meter, customer=customer, ranges=ranges)


@pytest.mark.django_db
@pytest.mark.parametrize(("aggregation", "raw_read"), [("sum", False), ("count", False),
                                                       ("avg", False), ("max", True)])
def test_the_current_hour_is_read_as_the_hour_minus_what_follows_now(aggregation, raw_read,
                                                                     monkeypatch):
    """The value endpoint's ranges end now: for sum, count and avg meters the partial current
    hour comes from its rollups and tail, and only the events after now are read raw."""
    pieces = []
    window_params = selectors.window_params

    def recording(given):
        given = list(given)
        pieces.extend(given)
        return window_params(given)

    meter = MeterFactory(aggregation=aggregation, value_property="amount")
    customer = CustomerFactory()
    now = BASE + timedelta(minutes=50)
    ingest(event(customer, ts=BASE + timedelta(minutes=10), amount=4), now=now)  # in the tail
    with time_machine.travel(now, tick=False), monkeypatch.context() as patch:
        patch.setattr(selectors, "window_params", recording)
        total = usage_totals(meter=meter, customer=customer,
                             ranges=[(BASE - timedelta(hours=30), now)])
    assert total == [selectors.usage_total(meter=meter, customer=customer,
                                           start=BASE - timedelta(hours=30), end=now)]
    assert total[0] == (1 if aggregation == "count" else 4)
    raw = [(s, e, sign) for _, size, s, e, sign in pieces if size == selectors.RAW]
    if raw_read:  # max cannot subtract: the partial hour is read raw
        assert raw == [(BASE, now, 1)]
    else:
        assert raw == [(now, BASE + timedelta(hours=1), -1)]


@pytest.mark.django_db
def test_usage_totals_edge_cases(django_assert_max_num_queries):
    meter = MeterFactory(aggregation="sum", value_property="amount")
    customer = CustomerFactory()
    with django_assert_max_num_queries(0):
        assert usage_totals(meter=meter, customer=customer, ranges=[]) == []
    with pytest.raises(InvalidInput):
        usage_totals(meter=meter, customer=customer, ranges=[(BASE, BASE)])
    ranges = [(BASE + timedelta(hours=h), BASE + timedelta(hours=h + 30)) for h in range(40)]
    with django_assert_max_num_queries(1):  # one statement, however many ranges
        assert usage_totals(meter=meter, customer=customer, ranges=ranges,
                            tail_hint=0) == [Decimal(0)] * 40


# --- the burn loads every segment's usage in one query ---------------------------------------

def _plain_usage_total(entitlement):
    """The former per-segment usage function: metering's usage_total, one call per segment."""
    meter = selectors.meter_get(entitlement.feature.meter_id)
    filters = entitlement.feature.meter_group_by_filters or None

    def total(start, end):
        return selectors.usage_total(meter=meter, customer=entitlement.customer, start=start,
                                     end=end, filters=filters)

    return total


@pytest.mark.django_db
@pytest.mark.parametrize("case", [c for c in CASES if c.name != "no_grants"],
                         ids=[c.name for c in CASES if c.name != "no_grants"])
def test_batched_value_equals_per_segment_value(case, django_assert_max_num_queries):
    meter = MeterFactory(event_name="llm_tokens", aggregation="sum", value_property="amount")
    feature = FeatureFactory(meter=meter)
    customer = CustomerFactory()
    entitlement, _ = build(case, feature=feature, customer=customer)
    _ingest_all(customer, case.events, "llm_tokens")
    entitlement = Entitlement.objects.select_related("feature", "customer").get(
        pk=entitlement.pk)
    plain = ent_selectors.entitlement_value(
        entitlement=entitlement, at=case.at, usage_total=_plain_usage_total(entitlement),
        additive=True, use_snapshots=False)
    outcome = ent_selectors.burn(entitlement, until=case.at, use_snapshots=False)
    segments = len(outcome.result.segments)
    # resets, grants, meter, watermark and one usage statement for all the segments
    # (it was two queries per segment)
    with django_assert_max_num_queries(5):
        batched = ent_selectors.entitlement_value(entitlement=entitlement, at=case.at,
                                                  use_snapshots=False)
    assert batched == plain, segments
    assert str(batched.usage) == str(plain.usage) and str(batched.balance) == str(plain.balance)
    # and the same through a snapshot taken on the way
    if segments > 1:
        middle = outcome.result.segments[segments // 2].start
        snap = ent_selectors.burn(entitlement, until=middle, use_snapshots=False).result.snapshot
        BalanceSnapshot.objects.create(
            entitlement=entitlement, at=snap.at,
            balances={k: str(v) for k, v in snap.balances.items()}, overage=snap.overage,
            period_start=snap.period_start, period_usage=snap.period_usage)
    assert ent_selectors.entitlement_value(entitlement=entitlement, at=case.at) == plain


@pytest.mark.django_db
def test_batched_value_of_a_non_additive_meter():
    """unique_count: the period's usage is total(period_start, t); the batch asks for those."""
    meter = MeterFactory(event_name="seat", aggregation="unique_count", value_property="user")
    feature = FeatureFactory(meter=meter)
    customer = CustomerFactory()
    case = next(c for c in CASES if c.name == "automatic_monthly_reset")  # across a reset
    entitlement, _ = build(case, feature=feature, customer=customer)
    for index, (ts, _amount) in enumerate(case.events):
        ingest(event(customer, ts=ts, name="seat", key=f"seat-{index}", user=f"u{index}"),
               now=ts)
    entitlement = Entitlement.objects.select_related("feature", "customer").get(
        pk=entitlement.pk)
    plain = ent_selectors.entitlement_value(
        entitlement=entitlement, at=case.at, usage_total=_plain_usage_total(entitlement),
        additive=False, use_snapshots=False)
    assert ent_selectors.entitlement_value(entitlement=entitlement, at=case.at,
                                           use_snapshots=False) == plain
