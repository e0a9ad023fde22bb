"""Reads: features, entitlements, grants, and the exact value / history of an entitlement."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from billing_project.db import execute_prepared, model_from_values
from billing_project.errors import InvalidInput, NotFound
from entitlements.burndown import (
    ADDITIVE_AGGREGATIONS,
    ManualReset,
    PeriodUsage,
    UsagePeriod,
    grant_refills,
)
from entitlements.models import (
    BalanceSnapshot,
    Entitlement,
    EntitlementGrant,
    EntitlementReset,
    Feature,
)
from grants import engine
from ledgers import periods
from ledgers.models import Customer

ZERO = Decimal(0)
UsageTotal = Callable[[datetime, datetime], Decimal]
MAX_HISTORY_WINDOWS = 2000


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


def feature_list(*, include_archived: bool = False) -> QuerySet[Feature]:
    qs = Feature.objects.all()
    return qs if include_archived else qs.filter(archived_at__isnull=True)


def feature_get(*, id_or_key: str) -> Feature:
    """By id, else the non-archived feature with that key."""
    feature = (Feature.objects.filter(pk=id_or_key).first()
               or Feature.objects.filter(key=id_or_key, archived_at__isnull=True).first())
    if feature is None:
        raise NotFound(f"No feature '{id_or_key}'.", code="feature_not_found")
    return feature


# --------------------------------------------------------------------------------------------
# Entitlements and grants
# --------------------------------------------------------------------------------------------


def entitlement_list(*, customer: Customer, include_deleted: bool = False
                     ) -> QuerySet[Entitlement]:
    qs = Entitlement.objects.filter(customer=customer).select_related("feature")
    return qs if include_deleted else qs.filter(deleted_at__isnull=True)


def entitlement_get(*, customer: Customer, id_or_feature_key: str) -> Entitlement:
    """By id (deleted included), else the active entitlement of the feature with that key."""
    qs = Entitlement.objects.filter(customer=customer).select_related("feature", "customer")
    entitlement = qs.filter(pk=id_or_feature_key).first()
    if entitlement is None:
        entitlement = qs.filter(feature__key=id_or_feature_key,
                                deleted_at__isnull=True).first()
    if entitlement is None:
        raise NotFound(f"No entitlement '{id_or_feature_key}' for customer {customer.pk}.",
                       code="entitlement_not_found")
    return entitlement


def grant_list(*, entitlement: Entitlement | None = None, customer_id: str | None = None,
               feature: str | None = None, include_voided: bool = True
               ) -> QuerySet[EntitlementGrant]:
    qs = EntitlementGrant.objects.select_related("entitlement", "entitlement__feature")
    if entitlement is not None:
        qs = qs.filter(entitlement=entitlement)
    if customer_id:
        qs = qs.filter(Q(entitlement__customer_id=customer_id)
                       | Q(entitlement__customer__external_customer_id=customer_id))
    if feature:
        qs = qs.filter(Q(entitlement__feature_id=feature) | Q(entitlement__feature__key=feature))
    if not include_voided:
        qs = qs.filter(voided_at__isnull=True)
    return qs


def grant_get(*, grant_id: str) -> EntitlementGrant:
    grant = (EntitlementGrant.objects.select_related("entitlement", "entitlement__customer",
                                                     "entitlement__feature")
             .filter(pk=grant_id).first())
    if grant is None:
        raise NotFound(f"No grant '{grant_id}'.", code="grant_not_found")
    return grant


# --------------------------------------------------------------------------------------------
# The burn-down of a metered entitlement
# --------------------------------------------------------------------------------------------


def usage_period_of(entitlement: Entitlement, resets=None) -> UsagePeriod | None:
    """The usage-period schedule (manual resets included); None without a usage period."""
    if not entitlement.usage_period_interval:
        return None
    if resets is None:
        resets = EntitlementReset.objects.filter(entitlement=entitlement,
                                                 kind=EntitlementReset.Kind.MANUAL)
    manual = tuple(sorted(
        (ManualReset(at=r.effective_at, preserve_overage=r.preserve_overage, anchor=r.anchor)
         for r in resets if r.kind == EntitlementReset.Kind.MANUAL),
        key=lambda r: r.at))
    return UsagePeriod(
        interval=periods.parse_interval(entitlement.usage_period_interval),
        anchor=entitlement.usage_period_anchor,
        measure_from=entitlement.measure_usage_from or entitlement.usage_period_anchor,
        preserve_overage=entitlement.preserve_overage_at_reset,
        tz=entitlement.customer.timezone or "UTC",
        manual=manual,
    )


def engine_grants(grants, *, start: datetime, end: datetime, tz: str) -> list[engine.Grant]:
    out = []
    for g in grants:
        ends = [t for t in (g.expires_at, g.voided_at) if t is not None]
        out.append(engine.Grant(
            id=g.id, amount=g.amount, effective_at=g.effective_at, created_at=g.created_at,
            priority=g.priority, expires_at=g.expires_at, voided_at=g.voided_at,
            min_rollover=g.min_rollover_amount, max_rollover=g.max_rollover_amount,
            refills=grant_refills(effective_at=g.effective_at,
                                  ends_at=min(ends) if ends else None,
                                  interval=g.recurrence_interval, anchor=g.recurrence_anchor,
                                  start=start, end=end, tz=tz),
        ))
    return out


class MeterUsage:
    """``total(start, end)`` of a meter for one customer: metering's ``usage_total``, with
    ``prefetch(ranges)`` loading many ranges in one usage query (see metering.usage_batch).
    Totals are kept for the life of the object (one burn)."""

    def __init__(self, *, meter, customer, filters: dict | None, tail_hint: int | None = None):
        self.meter = meter
        self.customer = customer
        self.filters = filters
        self.tail_hint = tail_hint  # the rollup watermark, read earlier (it only grows)
        self._totals: dict[tuple[datetime, datetime], Decimal] = {}

    def prefetch(self, ranges) -> None:
        from metering import selectors as metering_selectors
        from metering.usage_batch import usage_totals

        missing = [r for r in dict.fromkeys(ranges) if r[0] < r[1] and r not in self._totals]
        if not missing:
            return
        if self.tail_hint is None:
            self.tail_hint = metering_selectors._watermark_hint()
        values = usage_totals(meter=self.meter, customer=self.customer, ranges=missing,
                              filters=self.filters, tail_hint=self.tail_hint)
        self._totals.update(zip(missing, values, strict=True))

    def __call__(self, start: datetime, end: datetime) -> Decimal:
        key = (start, end)
        if key not in self._totals:
            if start >= end:  # as metering's usage_total: an empty range is invalid input
                from metering import selectors as metering_selectors

                return Decimal(metering_selectors.usage_total(
                    meter=self.meter, customer=self.customer, start=start, end=end,
                    filters=self.filters) or 0)
            self.prefetch([key])
        return self._totals[key]


def metering_usage_total(entitlement: Entitlement, *, tail_hint: int | None = None
                         ) -> tuple[UsageTotal, bool]:
    """``total(start, end)`` of the feature's meter for the customer, and whether it adds up."""
    from metering import selectors as metering_selectors

    feature = entitlement.feature
    meter = getattr(feature, "_meter", None)  # loaded with the value context
    if meter is None:
        meter = metering_selectors.meter_get(feature.meter_id or feature.meter_slug)
    filters = feature.meter_group_by_filters or None
    total = MeterUsage(meter=meter, customer=entitlement.customer, filters=filters,
                       tail_hint=tail_hint)
    return total, meter.aggregation in ADDITIVE_AGGREGATIONS


def _segment_cuts(grants: list[engine.Grant], resets, start: datetime, end: datetime,
                  boundaries) -> list[datetime] | None:
    """The instants at which ``engine.run`` cuts ``[start, end)`` into segments (None when it
    would refuse its input: it then raises as before)."""
    try:
        instants = engine._Engine(grants, resets).instants()
    except ValueError:
        return None
    events = {t for t in instants if start < t <= end}
    return sorted({start, end} | {t for t in events | set(boundaries) if start < t < end})


@dataclass
class Burn:
    """An engine run over an entitlement, with what the API needs around it."""

    entitlement: Entitlement
    schedule: UsagePeriod
    grants: dict[str, EntitlementGrant]
    result: engine.BurnResult
    snapshot_used: datetime | None = None
    reset_instants: list[datetime] = field(default_factory=list)


def _snapshot_before(entitlement: Entitlement, t: datetime, measure_from: datetime):
    row = (BalanceSnapshot.objects.filter(entitlement=entitlement, at__lte=t,
                                          at__gte=measure_from)
           .order_by("-at").first())
    if row is None:
        return None
    return engine.Snapshot(
        at=row.at,
        balances={k: Decimal(v) for k, v in row.balances.items()},
        overage=row.overage,
        period_start=row.period_start,
        period_usage=row.period_usage,
    )


def _ends_after(grant: EntitlementGrant, t: datetime) -> bool:
    ends = [x for x in (grant.expires_at, grant.voided_at) if x is not None]
    return not ends or min(ends) > t


@dataclass
class Preloaded:
    """What a burn needs from the database, loaded in one round trip (see value_context)."""

    grants: list[EntitlementGrant]
    resets: list[EntitlementReset]
    snapshot: engine.Snapshot | None
    tail_hint: int | None = None  # metering's rollup watermark, for its usage query's plan


def burn(entitlement: Entitlement, *, until: datetime, usage_total: UsageTotal | None = None,
         additive: bool | None = None, use_snapshots: bool = True,
         boundaries=(), snapshot_not_after: datetime | None = None,
         preloaded: Preloaded | None = None) -> Burn:
    """Run the engine for a metered entitlement from its measuring start (or the latest usable
    snapshot, taken no later than ``snapshot_not_after``) to ``until``.
    ``usage_total(start, end)`` defaults to the feature's meter.
    """
    schedule = usage_period_of(entitlement, preloaded.resets if preloaded else None)
    if schedule is None:
        raise InvalidInput("The entitlement has no usage period.", code="not_metered")
    if usage_total is None:
        usage_total, additive = metering_usage_total(
            entitlement, tail_hint=preloaded.tail_hint if preloaded else None)
    measure_from = schedule.measure_from
    rows = preloaded.grants if preloaded else EntitlementGrant.objects.filter(
        entitlement=entitlement)
    grants = {g.id: g for g in rows}

    snapshot = None
    if use_snapshots and preloaded is not None:
        snapshot = preloaded.snapshot
    elif use_snapshots:
        limit = until if snapshot_not_after is None else min(until, snapshot_not_after)
        snapshot = _snapshot_before(entitlement, limit, measure_from)
    run_start = snapshot.at if snapshot is not None else measure_from
    # Grants that ended by the start of the run, or start after its end, play no part in it.
    grants = {gid: g for gid, g in grants.items()
              if g.effective_at <= until and _ends_after(g, run_start)}
    resets = schedule.resets(run_start, until)
    reset_instants = [r.at for r in resets]
    if snapshot is not None and snapshot.period_start is not None:
        reset_instants.insert(0, snapshot.period_start)
    usage = PeriodUsage(usage_total, additive=bool(additive), reset_instants=reset_instants,
                        measure_from=measure_from)
    tz = schedule.tz
    eg = engine_grants(grants.values(), start=run_start, end=until, tz=tz)
    prefetch = getattr(usage_total, "prefetch", None)
    if prefetch is not None:  # every segment's usage in one query, not one query per segment
        cuts = _segment_cuts(eg, resets, run_start, until, boundaries)
        if cuts is not None:
            prefetch(usage.ranges(cuts))
    try:
        result = engine.run(grants=eg, start=run_start, end=until, usage=usage, resets=resets,
                            snapshot=snapshot, boundaries=boundaries)
    except engine.StaleSnapshotError:
        # A cache only: drop what no longer matches the grants and compute from the start.
        BalanceSnapshot.objects.filter(entitlement=entitlement, at__gte=snapshot.at).delete()
        return burn(entitlement, until=until, usage_total=usage_total, additive=additive,
                    use_snapshots=False, boundaries=boundaries)
    return Burn(entitlement=entitlement, schedule=schedule, grants=grants, result=result,
                snapshot_used=snapshot.at if snapshot is not None else None,
                reset_instants=reset_instants)


@dataclass(frozen=True)
class EntitlementValue:
    has_access: bool
    balance: Decimal | None = None
    usage: Decimal | None = None
    overage: Decimal | None = None
    total_available_grant_amount: Decimal | None = None
    config: dict | None = None


def entitlement_value(*, entitlement: Entitlement, at: datetime | None = None,
                      usage_total: UsageTotal | None = None, additive: bool | None = None,
                      use_snapshots: bool = True,
                      preloaded: Preloaded | None = None) -> EntitlementValue:
    """The exact value of an entitlement as of ``at`` (default now)."""
    at = at or timezone.now()
    if entitlement.type != Entitlement.Type.METERED:
        active = entitlement.is_active_at(at) and entitlement.created_at <= at
        return EntitlementValue(has_access=active, config=entitlement.config
                                if entitlement.type == Entitlement.Type.STATIC else None)
    measure_from = entitlement.measure_usage_from
    if not entitlement.is_active_at(at) or at < measure_from:
        return EntitlementValue(has_access=False, balance=ZERO, usage=ZERO, overage=ZERO,
                                total_available_grant_amount=ZERO)
    result = burn(entitlement, until=at, usage_total=usage_total, additive=additive,
                  use_snapshots=use_snapshots, preloaded=preloaded)
    r = result.result
    balance = r.balance
    available = sum((result.grants[g].amount for g in r.balances), ZERO)
    return EntitlementValue(
        has_access=entitlement.is_soft_limit or balance > 0,
        balance=balance,
        usage=r.period_usage,
        overage=r.overage,
        total_available_grant_amount=available,
    )


_VALUE_CONTEXT_SQL = """
WITH c AS (
    SELECT * FROM ledgers_customer WHERE {customer_condition} = %(customer)s::text
), e AS (
    SELECT e.* FROM entitlements_entitlement e
    JOIN c ON e.customer_id = c.id
    JOIN entitlements_feature f ON f.id = e.feature_id
    WHERE e.id = %(key)s::text OR (f.key = %(key)s::text AND e.deleted_at IS NULL)
    ORDER BY e.id = %(key)s::text DESC
    LIMIT 1
), s AS (
    SELECT s.* FROM entitlements_balancesnapshot s
    JOIN e ON s.entitlement_id = e.id
    WHERE s.at <= %(at)s::timestamptz AND s.at >= e.measure_usage_from
    ORDER BY s.at DESC LIMIT 1
)
SELECT
    (SELECT row_to_json(c)::text FROM c),
    (SELECT row_to_json(e)::text FROM e),
    (SELECT row_to_json(f)::text FROM entitlements_feature f JOIN e ON f.id = e.feature_id),
    (SELECT row_to_json(m)::text FROM {meter_table} m
        JOIN entitlements_feature f ON m.id = f.meter_id JOIN e ON f.id = e.feature_id),
    -- grants still active where the run starts (the snapshot), and already effective
    (SELECT json_agg(g)::text FROM entitlements_entitlementgrant g
        JOIN e ON g.entitlement_id = e.id
        WHERE g.effective_at <= %(at)s::timestamptz
          AND (g.voided_at IS NULL OR g.voided_at > COALESCE((SELECT at FROM s),
                                                             e.measure_usage_from))
          AND (g.expires_at IS NULL OR g.expires_at > COALESCE((SELECT at FROM s),
                                                               e.measure_usage_from))),
    (SELECT json_agg(r)::text FROM entitlements_entitlementreset r
        JOIN e ON r.entitlement_id = e.id WHERE r.kind = 'manual'),
    (SELECT row_to_json(s)::text FROM s),
    {watermark}
"""


def _meter_model():
    from metering.models import Meter

    return Meter


def _from_json(model, text: str | None):
    """A model instance from ``row_to_json`` text, numbers kept exact."""
    return None if text is None else _from_data(model, json.loads(text, parse_float=Decimal))


_AS_IS = {"CharField", "TextField", "BooleanField", "IntegerField", "BigIntegerField",
          "PositiveIntegerField", "SmallIntegerField", "JSONField"}
_DECODERS: dict[type, list] = {}


def _decoders(model) -> list:
    """(column, decode or None) per concrete field: JSON values of ``row_to_json`` as the
    field's Python value (datetimes from ISO text, decimals exact); else ``to_python``."""
    found = _DECODERS.get(model)
    if found is None:
        found = []
        for f in model._meta.concrete_fields:
            kind = f.get_internal_type()
            if kind in _AS_IS or (f.is_relation and
                                  f.target_field.get_internal_type() in _AS_IS):
                decode = None
            elif kind == "DateTimeField":
                decode = datetime.fromisoformat
            elif kind == "DecimalField":
                decode = Decimal
            else:
                decode = f.to_python
            found.append((f.column, decode))
        _DECODERS[model] = found
    return found


def _from_data(model, data: dict):
    values = [data[column] if decode is None or data[column] is None else decode(data[column])
              for column, decode in _decoders(model)]
    return model_from_values(model, values)


def value_context(*, key: str, at: datetime, customer_id: str | None = None,
                  external_customer_id: str | None = None) -> tuple[Entitlement, Preloaded]:
    """The entitlement (by id or active feature key) of a customer (by id or external id),
    with its grants, manual resets and latest snapshot before ``at``: one query, for the
    value endpoint's hot path. NotFound for an unknown customer or entitlement."""
    column, param = (("id", customer_id) if customer_id is not None
                     else ("external_customer_id", external_customer_id))
    from metering.rollups import WATERMARK_SQL

    # Prepared (psycopg keeps it per connection): parsing this query costs more than running it.
    sql = _VALUE_CONTEXT_SQL.format(customer_condition=column,
                                    meter_table=_meter_model()._meta.db_table,
                                    watermark=WATERMARK_SQL)
    row = execute_prepared(sql, {"customer": param, "key": key, "at": at}, fetch=True)[0]
    customer = _from_json(Customer, row[0])
    if customer is None:
        raise NotFound(f"No customer '{param}'.", code="customer_not_found")
    entitlement = _from_json(Entitlement, row[1])
    if entitlement is None:
        raise NotFound(f"No entitlement '{key}' for customer {customer.pk}.",
                       code="entitlement_not_found")
    entitlement.customer = customer
    entitlement.feature = _from_json(Feature, row[2])
    entitlement.feature._meter = _from_json(_meter_model(), row[3])
    grants = [_from_data(EntitlementGrant, g) for g in
              json.loads(row[4], parse_float=Decimal)] if row[4] else []
    resets = [_from_data(EntitlementReset, r) for r in
              json.loads(row[5], parse_float=Decimal)] if row[5] else []
    snapshot = None
    if row[6] is not None:
        snap = _from_json(BalanceSnapshot, row[6])
        snapshot = engine.Snapshot(at=snap.at,
                                   balances={k: Decimal(v) for k, v in snap.balances.items()},
                                   overage=snap.overage, period_start=snap.period_start,
                                   period_usage=snap.period_usage)
    return entitlement, Preloaded(grants=grants, resets=resets, snapshot=snapshot,
                                  tail_hint=row[7])


def current_usage_period(entitlement: Entitlement, at: datetime | None = None, resets=None):
    """(from, to, last_reset) of the usage period containing ``at``; Nones without one.

    ``resets``: the entitlement's reset rows when already loaded (prefetched lists).
    """
    schedule = usage_period_of(entitlement, resets)
    if schedule is None:
        return None, None, None
    at = at or timezone.now()
    if at < schedule.measure_from:
        start, end = schedule.measure_from, periods.period_containing(
            schedule.anchor, schedule.interval, schedule.measure_from, schedule.tz)[1]
        return start, end, None
    start, end = schedule.period_at(at)
    return start, end, schedule.last_reset_at(at)


# --------------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------------


def _window_cuts(start: datetime, end: datetime, size: str, tz: str) -> list[datetime]:
    interval = periods.HOUR if size == "hour" else periods.DAY
    zone = periods.get_tz(tz)
    local = start.astimezone(zone)
    if size == "hour":
        anchor = local.replace(minute=0, second=0, microsecond=0)
    else:
        anchor = periods.start_of_day(local.date(), zone)
    return list(periods.iter_boundaries(anchor, interval, start, end, zone))


def entitlement_history(*, entitlement: Entitlement, start: datetime | None, end: datetime | None,
                        window_size: str = "day", window_time_zone: str = "UTC",
                        usage_total: UsageTotal | None = None, additive: bool | None = None,
                        now: datetime | None = None) -> dict:
    """Windowed usage with balances, and the burn-down segments, over ``[start, end)``."""
    if entitlement.type != Entitlement.Type.METERED:
        raise InvalidInput("History exists only for metered entitlements.", code="not_metered")
    now = now or timezone.now()
    measure_from = entitlement.measure_usage_from
    if start is None:
        start = current_usage_period(entitlement, now)[0]
    end = end or now
    if end <= start:
        raise InvalidInput("'to' must be after 'from'.", code="invalid_range", field="to")
    start = max(start, measure_from)
    if end <= start:
        return {"windowed_history": [], "burndown_history": []}
    if window_size not in ("hour", "day"):
        raise InvalidInput("window_size must be hour or day.", code="invalid_window_size",
                           field="window_size")
    try:
        periods.get_tz(window_time_zone)
    except ValueError:
        raise InvalidInput(f"Unknown time zone '{window_time_zone}'.",
                           code="invalid_timezone", field="window_time_zone") from None
    cuts = _window_cuts(start, end, window_size, window_time_zone)
    if len(cuts) > MAX_HISTORY_WINDOWS:
        raise InvalidInput(f"At most {MAX_HISTORY_WINDOWS} windows; narrow the range.",
                           code="too_many_windows", field="from")
    outcome = burn(entitlement, until=end, usage_total=usage_total, additive=additive,
                   boundaries=[start, *cuts], snapshot_not_after=start)
    segments = [s for s in outcome.result.segments if s.start >= start]

    windows = []
    edges = [start, *cuts, end]
    index = 0
    for w_start, w_end in zip(edges[:-1], edges[1:], strict=True):
        usage = ZERO
        first = None
        while index < len(segments) and segments[index].start < w_end:
            seg = segments[index]
            first = first or seg
            usage += seg.usage
            index += 1
        windows.append({
            "period": {"from": w_start, "to": w_end},
            "usage": usage,
            "balance_at_start": first.total_balance_at_start if first else ZERO,
            "overage_at_start": first.overage_at_start if first else ZERO,
        })

    transition_instants = {t.at for t in outcome.result.transitions}
    burndown = []
    for seg in segments:
        if burndown and seg.start not in transition_instants:
            last = burndown[-1]
            last["period"]["to"] = seg.end
            last["usage"] += seg.usage
            last["overage"] += seg.overage
            last["balance_at_end"] = seg.total_balance_at_end
            for grant_id, amount in seg.grant_usages.items():
                last["_grant_usages"][grant_id] = last["_grant_usages"].get(grant_id, ZERO) + amount
            continue
        burndown.append({
            "period": {"from": seg.start, "to": seg.end},
            "usage": seg.usage,
            "overage": seg.overage,
            "balance_at_start": seg.total_balance_at_start,
            "balance_at_end": seg.total_balance_at_end,
            "_grant_usages": dict(seg.grant_usages),
        })
    for item in burndown:
        usages = item.pop("_grant_usages")
        item["grant_usages"] = [{"grant_id": g, "usage": u} for g, u in usages.items() if u]
    return {"windowed_history": windows, "burndown_history": burndown}


def snapshot_cutoff(as_of: datetime) -> datetime:
    grace = getattr(settings, "BILLING_INGEST_GRACE_PERIOD", timedelta(days=1))
    return as_of - grace
