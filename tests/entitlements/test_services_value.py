"""Table-driven value computations through the services and selectors.

A sum meter is simulated by point events ``(offset, amount)`` (the metering-backed path is
tested end to end in test_metering_integration.py). Every action (grant, void, reset) is written
through its service with ``now`` set to its own time, so the period rules apply as they would
live. Times are offsets from 2025-01-01T00:00Z, monthly usage period anchored there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from entitlements import selectors, services
from entitlements.models import BalanceSnapshot, Entitlement
from tests.entitlements.factories import FeatureFactory
from tests.ledgers.factories import CustomerFactory

D = Decimal
T0 = datetime(2025, 1, 1, tzinfo=UTC)
FEB = datetime(2025, 2, 1, tzinfo=UTC)
MAR = datetime(2025, 3, 1, tzinfo=UTC)


def at(days=0, hours=0, minutes=0, seconds=0, microseconds=0, base=T0):
    return base + timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds,
                            microseconds=microseconds)


def sum_meter(events):
    def total(start, end):
        return sum((D(str(a)) for t, a in events if start <= t < end), D(0))
    return total


@dataclass
class G:
    name: str
    amount: str
    priority: int = 1
    effective_at: datetime = T0
    expiration: dict | None = None
    min_rollover: str = "0"
    max_rollover: str | None = None
    recurrence: dict | None = None
    created_at: datetime | None = None


@dataclass
class Void:
    grant: str
    at: datetime


@dataclass
class R:
    at: datetime
    preserve_overage: bool | None = None
    retain_anchor: bool = False


@dataclass
class Case:
    name: str
    grants: list
    events: list
    at: datetime
    balance: str
    usage: str
    overage: str = "0"
    per_grant: dict = field(default_factory=dict)
    voids: list = field(default_factory=list)
    resets: list = field(default_factory=list)
    soft: bool = False
    preserve: bool = False
    issue_after_reset: str | None = None
    interval: str = "month"
    has_access: bool | None = None
    available: str | None = None


CASES = [
    Case("priority_1_burns_first", [G("g1", "100", 1), G("g2", "100", 2)],
         [(at(minutes=5), 120)], at(days=1), "80", "120", per_grant={"g1": "0", "g2": "80"}),
    Case("void_is_not_retroactive",
         [G("g", "100")], [(at(minutes=59), 50), (at(minutes=61), 50)], at(hours=2),
         "0", "100", "50", voids=[Void("g", at(hours=1))], has_access=False, available="0"),
    Case("void_boundary_is_exact",
         [G("g", "100")], [(at(minutes=59, seconds=59, microseconds=999999), 40),
                           (at(hours=1), 10)], at(hours=2),
         "0", "50", "10", voids=[Void("g", at(hours=1))]),
    Case("reset_rollover_min_max",
         [G("g1", "1000", 1, max_rollover="1000"), G("g2", "1000", 3, max_rollover="100")],
         [(at(hours=1), 600)], at(days=2), "500", "0",
         per_grant={"g1": "400", "g2": "100"}, resets=[R(at(days=1))]),
    Case("rollover_min_floor", [G("g", "100", min_rollover="50")], [(at(hours=1), 90)],
         at(days=2), "50", "0", resets=[R(at(days=1))]),
    Case("rollover_default_max_is_amount", [G("g", "100")], [(at(hours=1), 30)],
         at(days=2), "70", "0", resets=[R(at(days=1))]),
    Case("rollover_max_caps", [G("g", "100", max_rollover="20")], [(at(hours=1), 30)],
         at(days=2), "20", "0", resets=[R(at(days=1))]),
    Case("overage_dropped_at_reset", [G("g", "100", min_rollover="20")],
         [(at(hours=1), 150)], at(days=2), "20", "0", "0", resets=[R(at(days=1))]),
    Case("overage_preserved_and_paid", [G("g", "100", min_rollover="100")],
         [(at(hours=1), 150)], at(days=2), "50", "0", "0",
         resets=[R(at(days=1), preserve_overage=True)]),
    Case("overage_preserved_not_covered", [G("g", "100", min_rollover="20")],
         [(at(hours=1), 150)], at(days=2), "0", "0", "30",
         resets=[R(at(days=1), preserve_overage=True)]),
    Case("overage_paid_by_later_grant",
         [G("g1", "100"), G("g2", "100", effective_at=at(days=5))],
         [(at(days=1), 150)], at(days=6), "50", "150", "0", per_grant={"g1": "0", "g2": "50"}),
    Case("overage_before_later_grant", [G("g1", "100"), G("g2", "100", effective_at=at(days=5))],
         [(at(days=1), 150)], at(days=4), "0", "150", "50"),
    Case("recurrence_refills_daily",
         [G("g", "100", recurrence={"interval": "day"})],
         [(at(hours=1), 70), (at(days=1, hours=1), 50)], at(days=1, hours=2), "50", "120"),
    Case("recurrence_pays_overage",
         [G("g", "100", recurrence={"interval": "day"})],
         [(at(hours=1), 150)], at(days=1, hours=2), "50", "150", "0"),
    Case("recurrence_no_rollover",
         [G("g", "100", recurrence={"interval": "day"})],
         [(at(hours=1), 10)], at(days=2, hours=1), "100", "10"),
    Case("recurrence_with_anchor",
         [G("g", "100", recurrence={"interval": "day", "anchor": at(hours=12)})],
         [(at(hours=1), 80)], at(hours=11), "20", "80"),
    Case("recurrence_with_anchor_refilled",
         [G("g", "100", recurrence={"interval": "day", "anchor": at(hours=12)})],
         [(at(hours=1), 80)], at(hours=12), "100", "80"),
    Case("automatic_monthly_reset", [G("g", "100", max_rollover="0")],
         [(at(days=3), 80), (at(days=1, base=FEB), 5)], at(days=2, base=FEB), "0", "5", "5"),
    Case("automatic_reset_rolls_over", [G("g", "100")],
         [(at(days=3), 80), (at(days=1, base=FEB), 5)], at(days=2, base=FEB), "15", "5"),
    Case("grant_expires_exactly_at_reset",
         [G("g", "100", expiration={"duration": "month", "count": 1})],
         [(at(days=3), 30)], FEB, "0", "0", has_access=False),
    Case("grant_expires_before_usage",
         [G("g", "100", expiration={"duration": "hour", "count": 2})],
         [(at(hours=1), 30), (at(hours=2), 30)], at(hours=3), "0", "60", "30"),
    Case("grant_starting_at_reset_pays_preserved_overage",
         [G("g1", "100", max_rollover="0"), G("g2", "100", effective_at=FEB)],
         [(at(days=3), 130)], FEB, "70", "0", "0", preserve=True),
    Case("grant_starting_at_reset_overage_dropped",
         [G("g1", "100", max_rollover="0"), G("g2", "100", effective_at=FEB)],
         [(at(days=3), 130)], FEB, "100", "0", "0"),
    Case("soft_limit_keeps_access", [G("g", "10")], [(at(hours=1), 50)], at(days=1),
         "0", "50", "40", soft=True, has_access=True),
    Case("no_grants", [], [(at(hours=1), 5)], at(days=1), "0", "5", "5", has_access=False),
    Case("issue_after_reset_restores", [], [(at(days=3), 130)], at(days=1, base=FEB),
         "100", "0", "0", issue_after_reset="100"),
    Case("issue_after_reset_burns", [], [(at(days=3), 30)], at(days=4), "70", "30",
         issue_after_reset="100"),
    Case("burn_order_soonest_expiry",
         [G("a", "100", expiration={"duration": "day", "count": 10}),
          G("b", "100", expiration={"duration": "day", "count": 5})],
         [(at(hours=1), 30)], at(days=1), "170", "30", per_grant={"a": "100", "b": "70"}),
    Case("manual_reset_moves_anchor",
         [G("g", "100", max_rollover="0", recurrence={"interval": "day"})],
         [(at(days=14, hours=1), 10), (at(days=2, base=FEB), 7)],
         at(days=3, base=FEB), "100", "17", resets=[R(at(days=14))]),
    Case("manual_reset_retains_anchor",
         [G("g", "100", max_rollover="0", recurrence={"interval": "day"})],
         [(at(days=14, hours=1), 10), (at(days=2, base=FEB), 7)],
         at(days=3, base=FEB), "100", "7", resets=[R(at(days=14), retain_anchor=True)]),
    Case("iso_interval_hours", [G("g", "10", max_rollover="0")], [(at(hours=1), 4),
                                                                  (at(hours=7), 3)],
         at(hours=7, minutes=1), "0", "3", "3", interval="PT6H"),
    Case("fractional_amounts", [G("g", "0.3")], [(at(hours=1), "0.1"), (at(hours=2), "0.1")],
         at(hours=3), "0.1", "0.2"),
]


def build(case: Case, *, feature=None, customer=None):
    customer = customer or CustomerFactory()
    feature = feature or FeatureFactory()
    entitlement = services.entitlement_create(
        actor="test", customer=customer, type="metered", feature_key=feature.key,
        usage_period={"interval": case.interval, "anchor": T0}, is_soft_limit=case.soft,
        preserve_overage_at_reset=case.preserve, measure_usage_from=T0,
        issue_after_reset=D(case.issue_after_reset) if case.issue_after_reset else None, now=T0)
    actions = []
    for g in case.grants:
        actions.append((g.created_at or T0, 0, g))
    for v in case.voids:
        actions.append((v.at, 1, v))
    for r in case.resets:
        actions.append((r.at, 2, r))
    names = {}
    for when, _, action in sorted(actions, key=lambda a: (a[0], a[1])):
        if isinstance(action, G):
            names[action.name] = services.grant_create(
                actor="test", entitlement=entitlement, amount=D(action.amount),
                priority=action.priority, effective_at=action.effective_at,
                expiration=action.expiration, min_rollover_amount=D(action.min_rollover),
                max_rollover_amount=D(action.max_rollover) if action.max_rollover else None,
                recurrence=action.recurrence, now=when)
        elif isinstance(action, Void):
            services.grant_void(actor="test", grant=names[action.grant], now=when)
        else:
            services.entitlement_reset(actor="test", entitlement=entitlement, now=when,
                                       preserve_overage=action.preserve_overage,
                                       retain_anchor=action.retain_anchor)
    return Entitlement.objects.select_related("feature", "customer").get(pk=entitlement.pk), names


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_value(case):
    entitlement, names = build(case)
    usage = sum_meter(case.events)
    value = selectors.entitlement_value(entitlement=entitlement, at=case.at, usage_total=usage,
                                        additive=True)
    assert (value.balance, value.usage, value.overage) == (D(case.balance), D(case.usage),
                                                          D(case.overage))
    if case.has_access is not None:
        assert value.has_access is case.has_access
    else:
        assert value.has_access is (D(case.balance) > 0)
    if case.available is not None:
        assert value.total_available_grant_amount == D(case.available)
    if case.per_grant:
        outcome = selectors.burn(entitlement, until=case.at, usage_total=usage, additive=True)
        got = {n: outcome.result.balances.get(names[n].id, D(0)) for n in case.per_grant}
        assert got == {n: D(v) for n, v in case.per_grant.items()}


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_value_same_with_and_without_snapshots(case):
    """Snapshots are a cache: reads agree with them, without them, and after invalidation."""
    entitlement, _ = build(case)
    usage = sum_meter(case.events)
    plain = selectors.entitlement_value(entitlement=entitlement, at=case.at, usage_total=usage,
                                        additive=True, use_snapshots=False)
    # Snapshot at every transition up to the read time (grace period 0 via as_of shift).
    outcome = selectors.burn(entitlement, until=case.at, usage_total=usage, additive=True,
                             use_snapshots=False)
    for transition in outcome.result.transitions:
        state = selectors.burn(entitlement, until=transition.at, usage_total=usage,
                               additive=True, use_snapshots=False).result.snapshot
        services._store_snapshot(entitlement, state)
    cached = selectors.entitlement_value(entitlement=entitlement, at=case.at,
                                         usage_total=usage, additive=True)
    assert cached == plain
    for t in sorted({t.at for t in outcome.result.transitions}):
        assert selectors.entitlement_value(
            entitlement=entitlement, at=t, usage_total=usage, additive=True
        ) == selectors.entitlement_value(entitlement=entitlement, at=t, usage_total=usage,
                                         additive=True, use_snapshots=False)


@pytest.mark.django_db
def test_snapshot_invalidated_by_grant_void_and_reset():
    case = Case("x", [G("g", "100")], [(at(hours=1), 30), (at(days=2), 20)], at(days=3),
                "50", "50")
    entitlement, names = build(case)
    usage = sum_meter(case.events)
    now = at(days=3)
    # A snapshot at day 2 (stored directly: a segment boundary made by the grant below).
    state = selectors.burn(entitlement, until=at(days=2), usage_total=usage,
                           additive=True).result.snapshot
    services._store_snapshot(entitlement, state)
    assert BalanceSnapshot.objects.filter(entitlement=entitlement).count() == 1

    services.grant_create(actor="t", entitlement=entitlement, amount=D(10),
                          effective_at=at(days=1), expiration=None, now=now)
    assert not BalanceSnapshot.objects.filter(entitlement=entitlement).exists()
    value = selectors.entitlement_value(entitlement=entitlement, at=now, usage_total=usage,
                                        additive=True)
    assert value.balance == D(60)

    services._store_snapshot(entitlement, selectors.burn(
        entitlement, until=at(days=2), usage_total=usage, additive=True).result.snapshot)
    services.grant_void(actor="t", grant=names["g"], voided_at=at(days=1, hours=12), now=now)
    assert not BalanceSnapshot.objects.filter(entitlement=entitlement).exists()
    value = selectors.entitlement_value(entitlement=entitlement, at=now, usage_total=usage,
                                        additive=True)
    # g: 100-30 = 70 voided at day 1.5; the 10-grant pays 10 of the 20 at day 2.
    assert (value.balance, value.overage) == (D(0), D(10))

    services._store_snapshot(entitlement, selectors.burn(
        entitlement, until=at(days=2), usage_total=usage, additive=True).result.snapshot)
    services.entitlement_reset(actor="t", entitlement=entitlement, effective_at=at(days=1),
                               now=now)
    assert not BalanceSnapshot.objects.filter(entitlement=entitlement).exists()
    value = selectors.entitlement_value(entitlement=entitlement, at=now, usage_total=usage,
                                        additive=True)
    assert value == selectors.entitlement_value(entitlement=entitlement, at=now,
                                                usage_total=usage, additive=True,
                                                use_snapshots=False)


@pytest.mark.django_db
def test_stale_snapshot_is_ignored_and_dropped():
    case = Case("x", [G("g", "100")], [(at(hours=1), 30)], at(days=3), "70", "30")
    entitlement, _ = build(case)
    usage = sum_meter(case.events)
    BalanceSnapshot.objects.create(entitlement=entitlement, at=at(days=1),
                                   balances={"egr_unknown": "5"}, overage=0,
                                   period_start=T0, period_usage=0)
    value = selectors.entitlement_value(entitlement=entitlement, at=at(days=3),
                                        usage_total=usage, additive=True)
    assert value.balance == D(70)
    assert not BalanceSnapshot.objects.filter(entitlement=entitlement).exists()


@pytest.mark.django_db
def test_deleted_entitlement_point_in_time():
    case = Case("x", [G("g", "100")], [(at(hours=1), 30)], at(days=3), "70", "30")
    entitlement, _ = build(case)
    usage = sum_meter(case.events)
    services.entitlement_delete(actor="t", entitlement=entitlement, now=at(days=2))
    entitlement.refresh_from_db()
    before = selectors.entitlement_value(entitlement=entitlement, at=at(days=1),
                                         usage_total=usage, additive=True)
    after = selectors.entitlement_value(entitlement=entitlement, at=at(days=2),
                                        usage_total=usage, additive=True)
    assert (before.has_access, before.balance) == (True, D(70))
    assert after.has_access is False


@pytest.mark.django_db
def test_non_additive_meter_counts_from_period_start():
    """unique_count: the period's usage is total(period_start, t), however segments are cut."""
    users = [(at(hours=1), "a"), (at(hours=2), "a"), (at(days=2), "b"), (at(days=3), "a")]

    def unique(start, end):
        return D(len({u for t, u in users if start <= t < end}))

    case = Case("x", [G("g1", "10"), G("g2", "10", effective_at=at(days=1))], [], at(days=4),
                "0", "0")
    entitlement, _ = build(case)
    value = selectors.entitlement_value(entitlement=entitlement, at=at(days=4),
                                        usage_total=unique, additive=False)
    assert (value.usage, value.balance) == (D(2), D(18))


@pytest.mark.django_db
def test_current_usage_period_and_last_reset():
    case = Case("x", [], [], at(days=3), "0", "0")
    entitlement, _ = build(case)
    assert selectors.current_usage_period(entitlement, at(days=3)) == (T0, FEB, None)
    assert selectors.current_usage_period(entitlement, FEB) == (FEB, MAR, FEB)
    services.entitlement_reset(actor="t", entitlement=entitlement, now=at(days=10))
    assert selectors.current_usage_period(entitlement, at(days=11)) == (
        at(days=10), at(days=10, base=FEB), at(days=10))
