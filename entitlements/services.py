"""Writes for features, entitlements, entitlement grants and resets (API.md §5).

Every write that changes an entitlement's burn-down (grant, void, reset, delete) locks the
entitlement row first; that row is the lock target. Snapshots at or after the instant a write
changes are deleted in the same transaction (they are a cache only).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing_project.errors import Conflict, InvalidInput, NotFound
from entitlements import selectors
from entitlements.models import (
    FEATURE_KEY_PATTERN,
    BalanceSnapshot,
    Entitlement,
    EntitlementGrant,
    EntitlementReset,
    Feature,
)
from grants import engine
from ledgers import periods
from ledgers.audit import record_action
from ledgers.models import Customer

FEATURE_METER_AGGREGATIONS = ("sum", "count", "unique_count", "latest")
EXPIRATION_DURATIONS = ("hour", "day", "week", "month", "year")
_KEY_RE = re.compile(FEATURE_KEY_PATTERN)
MAX_PRIORITY = 1_000_000


def _iso(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _interval_text(value: str, *, field: str, code: str) -> str:
    try:
        interval = periods.parse_interval(value)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(str(exc), code=code, field=field) from None
    return interval.name or str(interval)


def _lock_entitlement(entitlement: Entitlement) -> Entitlement:
    return (Entitlement.objects.select_for_update(no_key=True, of=("self",))
            .select_related("feature", "customer").get(pk=entitlement.pk))


def _invalidate_snapshots(entitlement: Entitlement, since: datetime) -> int:
    deleted, _ = BalanceSnapshot.objects.filter(entitlement=entitlement, at__gte=since).delete()
    return deleted


def _current_period_start(entitlement: Entitlement, now: datetime) -> datetime:
    start, _, _ = selectors.current_usage_period(entitlement, now)
    return start


def _require_in_current_period(entitlement: Entitlement, at: datetime, now: datetime, *,
                               field: str, label: str, code_prefix: str,
                               allow_future: bool = False) -> None:
    """API.md §5: grants, voids and resets land neither in the future nor before the current
    usage period's start (the last reset). Codes: `<prefix>_in_future`,
    `<prefix>_before_current_period`."""
    if not allow_future and at > now:
        raise InvalidInput(f"{label} must not be in the future.",
                           code=f"{code_prefix}_in_future", field=field)
    period_start = _current_period_start(entitlement, now)
    if at < period_start:
        raise InvalidInput(
            f"{label} must not be before the current usage period start or the last reset "
            f"({period_start.isoformat()}).", code=f"{code_prefix}_before_current_period",
            field=field)


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


def _meter_for(slug: str):
    try:
        from metering import selectors as metering_selectors
    except ImportError:
        raise InvalidInput("Meters are not available.", code="meter_not_found",
                           field="meter_slug") from None
    try:  # the active meter with that slug, else an archived one (rejected by the caller)
        meter = metering_selectors.meter_get(slug)
    except NotFound:
        meter = None
    if meter is None:
        raise InvalidInput(f"No meter '{slug}'.", code="meter_not_found", field="meter_slug")
    return meter


@transaction.atomic
def feature_create(*, actor, key: str, name: str, meter_slug: str | None = None,
                   meter_group_by_filters: dict | None = None,
                   metadata: dict | None = None) -> Feature:
    if not isinstance(key, str) or len(key) > 64 or not _KEY_RE.fullmatch(key):
        raise InvalidInput("key must match ^[a-z0-9]+(?:_[a-z0-9]+)*$ (at most 64 characters).",
                           code="invalid_feature_key", field="key")
    filters = dict(meter_group_by_filters or {})
    if meter_slug:
        meter = _meter_for(meter_slug)
        if meter.aggregation not in FEATURE_METER_AGGREGATIONS:
            raise InvalidInput(
                f"A feature needs a sum, count, unique_count or latest meter; "
                f"'{meter_slug}' aggregates by {meter.aggregation}.",
                code="meter_aggregation_not_supported", field="meter_slug")
        allowed = set((meter.group_by or {}).keys())
        unknown = sorted(set(filters) - allowed)
        if unknown:
            keys = ", ".join(sorted(allowed)) or "none"
            raise InvalidInput(
                f"Filters must use the meter's group_by keys ({keys}); unknown: "
                f"{', '.join(unknown)}.",
                code="invalid_group_by_filter", field="meter_group_by_filters")
        if getattr(meter, "archived_at", None) is not None:
            raise InvalidInput(f"Meter '{meter_slug}' is archived.", code="meter_archived",
                               field="meter_slug")
        meter_slug, meter_id = meter.slug, meter.pk
    elif filters:
        raise InvalidInput("meter_group_by_filters need a meter_slug.",
                           code="filters_without_meter", field="meter_group_by_filters")
    else:
        meter_id = None
    feature = Feature(key=key, name=name, meter_slug=meter_slug or None, meter_id=meter_id,
                      meter_group_by_filters=filters, metadata=metadata or {})
    try:
        with transaction.atomic():
            feature.save(force_insert=True)
    except IntegrityError as exc:
        if "feature_key_unique_active" not in str(exc):
            raise
        existing = Feature.objects.filter(key=key, archived_at__isnull=True).first()
        raise Conflict(f"A feature with key '{key}' already exists.",
                       code="feature_key_exists",
                       extra={"conflicting_id": existing.pk if existing else None}) from None
    record_action(actor=actor, action="feature.create", target=feature,
                  data={"after": {"key": key, "name": name, "meter_slug": feature.meter_slug,
                                  "meter_group_by_filters": filters}})
    return feature


@transaction.atomic
def feature_archive(*, actor, feature: Feature, now: datetime | None = None) -> Feature:
    feature = Feature.objects.select_for_update().get(pk=feature.pk)
    if feature.archived_at is not None:
        raise Conflict(f"Feature '{feature.key}' is already archived.",
                       code="feature_already_archived")
    feature.archived_at = now or timezone.now()
    feature.save(update_fields=["archived_at"])
    record_action(actor=actor, action="feature.archive", target=feature,
                  data={"after": {"archived_at": feature.archived_at.isoformat()}})
    return feature


# --------------------------------------------------------------------------------------------
# Entitlements
# --------------------------------------------------------------------------------------------


def _resolve_feature(feature_id: str | None, feature_key: str | None) -> Feature:
    if feature_id:
        feature = Feature.objects.filter(pk=feature_id).first()
        field = "feature_id"
        if feature is not None and feature_key and feature.key != feature_key:
            raise InvalidInput(f"feature_id {feature_id} is not the feature '{feature_key}'.",
                               code="feature_mismatch", field="feature_key")
    elif feature_key:
        feature = (Feature.objects.filter(key=feature_key, archived_at__isnull=True).first()
                   or Feature.objects.filter(key=feature_key).order_by("-created_at").first())
        field = "feature_key"
    else:
        raise InvalidInput("feature_key or feature_id is required.", code="feature_required",
                           field="feature_key")
    if feature is None:
        raise InvalidInput(f"No feature '{feature_id or feature_key}'.",
                           code="feature_not_found", field=field)
    if feature.archived_at is not None:
        raise InvalidInput(f"Feature '{feature.key}' is archived.", code="feature_archived",
                           field=field)
    return feature


@transaction.atomic
def entitlement_create(*, actor, customer: Customer, type: str, feature_key: str | None = None,
                       feature_id: str | None = None, usage_period: dict | None = None,
                       is_soft_limit: bool = False, issue_after_reset: Decimal | None = None,
                       issue_after_reset_priority: int = 1,
                       preserve_overage_at_reset: bool = False,
                       measure_usage_from: datetime | str | None = None,
                       config: dict | None = None, metadata: dict | None = None,
                       now: datetime | None = None) -> Entitlement:
    now = now or timezone.now()
    if type not in Entitlement.Type.values:
        raise InvalidInput("type must be metered, static or boolean.", code="invalid_type",
                           field="type")
    feature = _resolve_feature(feature_id, feature_key)
    metered = type == Entitlement.Type.METERED
    if metered and not feature.is_metered:
        raise InvalidInput(f"Feature '{feature.key}' has no meter: a metered entitlement needs "
                           "a metered feature.", code="feature_not_metered", field="feature_key")
    if type == Entitlement.Type.STATIC:
        if not isinstance(config, dict):
            raise InvalidInput("A static entitlement needs config (a JSON object).",
                               code="config_required", field="config")
    elif config is not None:
        raise InvalidInput("config is only for static entitlements.", code="config_not_allowed",
                           field="config")
    if not metered and issue_after_reset is not None:
        raise InvalidInput("issue_after_reset is only for metered entitlements.",
                           code="not_metered", field="issue_after_reset")
    if issue_after_reset is not None and issue_after_reset <= 0:
        raise InvalidInput("issue_after_reset must be greater than 0.", code="invalid_amount",
                           field="issue_after_reset")
    if not 0 <= issue_after_reset_priority <= MAX_PRIORITY:
        raise InvalidInput("issue_after_reset_priority must be between 0 and 1000000.",
                           code="invalid_priority", field="issue_after_reset_priority")

    interval = anchor = None
    if usage_period:
        interval = _interval_text(usage_period.get("interval"), field="usage_period.interval",
                                  code="invalid_usage_period")
        anchor = usage_period.get("anchor") or now
    elif metered:
        raise InvalidInput("A metered entitlement needs a usage_period.",
                           code="usage_period_required", field="usage_period")

    measure_from = None
    if metered:
        if measure_usage_from in (None, "CURRENT_PERIOD_START", "current_period_start"):
            measure_from = periods.period_containing(anchor, interval, now,
                                                     customer.timezone)[0]
        elif measure_usage_from in ("NOW", "now"):
            measure_from = now
        elif isinstance(measure_usage_from, datetime):
            measure_from = measure_usage_from
        else:
            raise InvalidInput("measure_usage_from must be a timestamp, CURRENT_PERIOD_START or "
                               "NOW.", code="invalid_measure_usage_from",
                               field="measure_usage_from")

    entitlement = Entitlement(
        customer=customer, feature=feature, type=type, usage_period_interval=interval,
        usage_period_anchor=anchor, measure_usage_from=measure_from,
        is_soft_limit=bool(is_soft_limit) if metered else False,
        issue_after_reset=issue_after_reset, issue_after_reset_priority=issue_after_reset_priority,
        preserve_overage_at_reset=bool(preserve_overage_at_reset) if metered else False,
        config=config if type == Entitlement.Type.STATIC else None, metadata=metadata or {},
        created_at=now,
    )
    try:
        with transaction.atomic():
            entitlement.save(force_insert=True)
    except IntegrityError as exc:
        if "entitlement_one_active_per_feature" not in str(exc):
            raise
        existing = Entitlement.objects.filter(customer=customer, feature=feature,
                                              deleted_at__isnull=True).first()
        raise Conflict(
            f"Customer {customer.pk} already has an active entitlement for feature "
            f"'{feature.key}'" + (f": {existing.pk}." if existing else "."),
            code="entitlement_exists",
            extra={"conflicting_id": existing.pk if existing else None}) from None
    record_action(actor=actor, action="entitlement.create", target=entitlement,
                  data={"after": {"type": type, "customer_id": customer.pk,
                                  "feature_id": feature.pk, "usage_period_interval": interval,
                                  "usage_period_anchor": _iso(anchor),
                                  "measure_usage_from": _iso(measure_from),
                                  "issue_after_reset": _iso(issue_after_reset)}})
    if issue_after_reset is not None:
        _issue_after_reset_grant(entitlement, actor=actor)
    return entitlement


def _issue_after_reset_grant(entitlement: Entitlement, *, actor="system"
                             ) -> EntitlementGrant | None:
    """The grant behind issue_after_reset: non-expiring, min = max rollover = amount, from the
    start of measuring. Idempotent (one per entitlement, by constraint)."""
    amount = entitlement.issue_after_reset
    grant = EntitlementGrant(
        entitlement=entitlement, amount=amount, priority=entitlement.issue_after_reset_priority,
        effective_at=entitlement.measure_usage_from, min_rollover_amount=amount,
        max_rollover_amount=amount, source=EntitlementGrant.Source.ISSUE_AFTER_RESET,
        created_at=entitlement.created_at,
    )
    try:
        with transaction.atomic():
            grant.save(force_insert=True)
    except IntegrityError as exc:
        if "entgrant_one_issue_after_reset" in str(exc):
            return None
        raise
    _invalidate_snapshots(entitlement, grant.effective_at)
    record_action(actor=actor, action="entitlement_grant.create", target=grant,
                  data={"after": {"amount": str(amount), "source": grant.source}})
    return grant


@transaction.atomic
def entitlement_delete(*, actor, entitlement: Entitlement, now: datetime | None = None
                       ) -> Entitlement:
    entitlement = _lock_entitlement(entitlement)
    if entitlement.deleted_at is not None:
        raise Conflict(f"Entitlement {entitlement.pk} is already deleted.",
                       code="entitlement_already_deleted")
    entitlement.deleted_at = now or timezone.now()
    entitlement.save(update_fields=["deleted_at"])
    record_action(actor=actor, action="entitlement.delete", target=entitlement,
                  data={"after": {"deleted_at": entitlement.deleted_at.isoformat()}})
    return entitlement


def _require_metered(entitlement: Entitlement, now: datetime) -> None:
    if entitlement.type != Entitlement.Type.METERED:
        raise InvalidInput("Only metered entitlements have grants and resets.",
                           code="not_metered")
    if not entitlement.is_active_at(now):
        raise InvalidInput(f"Entitlement {entitlement.pk} is deleted.",
                           code="entitlement_deleted")


# --------------------------------------------------------------------------------------------
# Grants
# --------------------------------------------------------------------------------------------


@transaction.atomic
def grant_create(*, actor, entitlement: Entitlement, amount: Decimal, effective_at: datetime,
                 expiration: dict | None, priority: int = 1,
                 min_rollover_amount: Decimal = Decimal(0),
                 max_rollover_amount: Decimal | None = None, recurrence: dict | None = None,
                 metadata: dict | None = None, now: datetime | None = None) -> EntitlementGrant:
    now = now or timezone.now()
    entitlement = _lock_entitlement(entitlement)
    _require_metered(entitlement, now)
    tz = entitlement.customer.timezone or "UTC"
    if amount is None or amount <= 0:
        raise InvalidInput("amount must be greater than 0.", code="invalid_amount",
                           field="amount")
    if not 0 <= priority <= MAX_PRIORITY:
        raise InvalidInput("priority must be between 0 and 1000000.", code="invalid_priority",
                           field="priority")
    min_rollover_amount = Decimal(0) if min_rollover_amount is None else min_rollover_amount
    if min_rollover_amount < 0:
        raise InvalidInput("min_rollover_amount must not be negative.", code="invalid_amount",
                           field="min_rollover_amount")
    if max_rollover_amount is None:
        max_rollover_amount = amount
    if max_rollover_amount < 0:
        raise InvalidInput("max_rollover_amount must not be negative.", code="invalid_amount",
                           field="max_rollover_amount")
    if min_rollover_amount > max_rollover_amount:
        raise InvalidInput("min_rollover_amount must not exceed max_rollover_amount.",
                           code="min_rollover_above_max", field="min_rollover_amount")
    _require_in_current_period(entitlement, effective_at, now, field="effective_at",
                               label="effective_at", code_prefix="effective_at",
                               allow_future=True)

    duration = count = expires_at = None
    if expiration is not None:
        duration = str(expiration.get("duration") or "").lower()
        count = expiration.get("count")
        if duration not in EXPIRATION_DURATIONS:
            raise InvalidInput("expiration.duration must be hour, day, week, month or year.",
                               code="invalid_expiration", field="expiration.duration")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100_000:
            raise InvalidInput("expiration.count must be an integer >= 1.",
                               code="invalid_expiration", field="expiration.count")
        try:
            expires_at = periods.expiration_at(effective_at, duration, count, tz)
        except ValueError as exc:
            raise InvalidInput(str(exc), code="invalid_expiration", field="expiration") from None

    rec_interval = rec_anchor = None
    if recurrence:
        rec_interval = _interval_text(recurrence.get("interval"), field="recurrence.interval",
                                      code="invalid_recurrence")
        rec_anchor = recurrence.get("anchor") or effective_at

    grant = EntitlementGrant.objects.create(
        entitlement=entitlement, amount=amount, priority=priority, effective_at=effective_at,
        expiration_duration=duration, expiration_count=count, expires_at=expires_at,
        min_rollover_amount=min_rollover_amount, max_rollover_amount=max_rollover_amount,
        recurrence_interval=rec_interval, recurrence_anchor=rec_anchor, metadata=metadata or {},
        created_at=now,
    )
    _invalidate_snapshots(entitlement, effective_at)
    record_action(actor=actor, action="entitlement_grant.create", target=grant, data={"after": {
        "entitlement_id": entitlement.pk, "amount": str(amount), "priority": priority,
        "effective_at": effective_at.isoformat(), "expires_at": _iso(expires_at),
        "min_rollover_amount": str(min_rollover_amount),
        "max_rollover_amount": str(max_rollover_amount), "recurrence_interval": rec_interval,
        "recurrence_anchor": _iso(rec_anchor)}})
    return grant


@transaction.atomic
def grant_void(*, actor, grant: EntitlementGrant, voided_at: datetime | None = None,
               reason: str = "", now: datetime | None = None) -> EntitlementGrant:
    """Voiding is not retroactive: usage already burned from the grant stays attributed."""
    now = now or timezone.now()
    entitlement = _lock_entitlement(grant.entitlement)
    grant = EntitlementGrant.objects.select_for_update().get(pk=grant.pk)
    if grant.voided_at is not None:
        raise Conflict(f"Grant {grant.pk} is already voided.", code="grant_already_voided")
    voided_at = voided_at or now
    _require_in_current_period(entitlement, voided_at, now, field="voided_at",
                               label="voided_at", code_prefix="voided_at")
    grant.voided_at = voided_at
    grant.save(update_fields=["voided_at"])
    _invalidate_snapshots(entitlement, voided_at)
    record_action(actor=actor, action="entitlement_grant.void", target=grant, reason=reason,
                  data={"before": {"voided_at": None},
                        "after": {"voided_at": voided_at.isoformat()}})
    return grant


# --------------------------------------------------------------------------------------------
# Resets
# --------------------------------------------------------------------------------------------


@transaction.atomic
def entitlement_reset(*, actor, entitlement: Entitlement, effective_at: datetime | None = None,
                      retain_anchor: bool = False, preserve_overage: bool | None = None,
                      reason: str = "", now: datetime | None = None) -> EntitlementReset:
    """Start a new usage period at ``effective_at`` (default now), with rollover."""
    now = now or timezone.now()
    entitlement = _lock_entitlement(entitlement)
    _require_metered(entitlement, now)
    effective_at = effective_at or now
    _require_in_current_period(entitlement, effective_at, now, field="effective_at",
                               label="A reset", code_prefix="reset")
    if preserve_overage is None:
        preserve_overage = entitlement.preserve_overage_at_reset
    schedule = selectors.usage_period_of(entitlement)
    before = schedule.period_at(effective_at)
    anchor = effective_at if not retain_anchor else schedule.anchor_at(effective_at)[0]
    existing = EntitlementReset.objects.filter(entitlement=entitlement,
                                               effective_at=effective_at).first()
    if existing is not None and existing.kind == EntitlementReset.Kind.MANUAL:
        raise Conflict(f"Entitlement {entitlement.pk} already has a reset at "
                       f"{effective_at.isoformat()}.", code="reset_exists",
                       extra={"conflicting_id": existing.pk})
    if existing is not None:  # an automatic reset recorded by the job: the manual one wins
        existing.kind = EntitlementReset.Kind.MANUAL
        existing.preserve_overage = preserve_overage
        existing.retain_anchor = retain_anchor
        existing.anchor = anchor
        existing.save(update_fields=["kind", "preserve_overage", "retain_anchor", "anchor"])
        reset = existing
    else:
        reset = EntitlementReset.objects.create(
            entitlement=entitlement, effective_at=effective_at, preserve_overage=preserve_overage,
            retain_anchor=retain_anchor, anchor=anchor, created_at=now)
    # Later automatic rows were computed with the old anchor.
    EntitlementReset.objects.filter(entitlement=entitlement, effective_at__gt=effective_at,
                                    kind=EntitlementReset.Kind.AUTOMATIC).delete()
    _invalidate_snapshots(entitlement, effective_at)
    record_action(actor=actor, action="entitlement.reset", target=entitlement, reason=reason,
                  data={"before": {"period_start": before[0].isoformat()},
                        "after": {"effective_at": effective_at.isoformat(),
                                  "retain_anchor": retain_anchor,
                                  "preserve_overage": preserve_overage,
                                  "anchor": anchor.isoformat()}})
    return reset


# --------------------------------------------------------------------------------------------
# Snapshots (used by the snapshot_balances job)
# --------------------------------------------------------------------------------------------


def _lock_for_job(entitlement: Entitlement, skip_locked: bool) -> Entitlement | None:
    qs = Entitlement.objects.select_for_update(no_key=True, of=("self",),
                                               skip_locked=skip_locked)
    return qs.select_related("feature", "customer").filter(pk=entitlement.pk).first()


@transaction.atomic
def snapshot_save(*, entitlement: Entitlement, as_of: datetime, at: datetime | None = None,
                  skip_locked: bool = False, usage_total=None,
                  additive: bool | None = None) -> BalanceSnapshot | None:
    """Save the engine state at ``at``, or else at the latest segment boundary (a transition,
    or the last UTC midnight, at which the run is cut); either way no later than the ingest
    grace period before ``as_of``.

    Holds the entitlement's lock so no grant, void or reset lands while it computes (with
    ``skip_locked`` another worker holding it means the work is being done: returns None).
    Idempotent: an existing snapshot at that instant is kept. Returns the new row or None.
    """
    entitlement = _lock_for_job(entitlement, skip_locked)
    if entitlement is None or entitlement.type != Entitlement.Type.METERED:
        return None
    cutoff = selectors.snapshot_cutoff(as_of)
    if entitlement.deleted_at is not None:
        cutoff = min(cutoff, entitlement.deleted_at)
    if at is None:
        if cutoff <= entitlement.measure_usage_from:
            return None
        outcome = selectors.burn(entitlement, until=cutoff, usage_total=usage_total,
                                 additive=additive)
        instants = [t.at for t in outcome.result.transitions
                    if outcome.result.start < t.at <= cutoff]
        # Also the last midnight (UTC) before the cutoff, so that reads never have to sum
        # much more than the grace period's usage, even without transitions.
        midnight = cutoff.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        if outcome.result.start < midnight:
            instants.append(midnight)
        if not instants:
            return None
        at = max(instants)
    if not entitlement.measure_usage_from < at <= cutoff:
        return None
    if BalanceSnapshot.objects.filter(entitlement=entitlement, at=at).exists():
        return None
    # The state after the transition at `at` is the final state of a run ending there.
    state = selectors.burn(entitlement, until=at, usage_total=usage_total,
                           additive=additive).result.snapshot
    return _store_snapshot(entitlement, state)


@transaction.atomic
def automatic_resets_record(*, entitlement: Entitlement, as_of: datetime,
                            skip_locked: bool = False) -> list[EntitlementReset] | None:
    """Record the usage-period resets up to ``as_of`` that reads compute anyway (bookkeeping
    for the admin and audits), and make sure the issue_after_reset grant exists.

    Idempotent (one row per instant, by constraint). None when another worker holds the lock.
    """
    entitlement = _lock_for_job(entitlement, skip_locked)
    if entitlement is None:
        return None
    if entitlement.type != Entitlement.Type.METERED:
        return []
    if entitlement.issue_after_reset is not None:
        _issue_after_reset_grant(entitlement)
    until = as_of if entitlement.deleted_at is None else min(as_of, entitlement.deleted_at)
    schedule = selectors.usage_period_of(entitlement)
    last = (EntitlementReset.objects.filter(entitlement=entitlement)
            .order_by("-effective_at").values_list("effective_at", flat=True).first())
    start = max(last or schedule.measure_from, schedule.measure_from)
    if until <= start:
        return []
    manual = {r.at for r in schedule.manual}
    rows = [EntitlementReset(entitlement=entitlement, effective_at=reset.at,
                             kind=EntitlementReset.Kind.AUTOMATIC,
                             preserve_overage=reset.preserve_overage, retain_anchor=True,
                             anchor=schedule.anchor_at(reset.at)[0], created_at=as_of)
            for reset in schedule.resets(start, until) if reset.at not in manual]
    EntitlementReset.objects.bulk_create(rows, ignore_conflicts=True)
    return rows
def snapshots_invalidate(*, customer_id: str | None, since: datetime) -> int:
    """Drop cached balances at or after ``since`` for a customer's entitlements (all customers
    when None). For metering to call when usage older than the grace period changes
    (amendment, deprecation, backfill close or revert). Returns the number of rows dropped."""
    rows = BalanceSnapshot.objects.filter(at__gte=since)
    if customer_id is not None:
        rows = rows.filter(entitlement__customer_id=customer_id)
    deleted, _ = rows.delete()
    return deleted


def _store_snapshot(entitlement: Entitlement, state: engine.Snapshot) -> BalanceSnapshot | None:
    """Insert the snapshot; None when one already exists at that instant."""
    try:
        with transaction.atomic():
            return BalanceSnapshot.objects.create(
                entitlement=entitlement, at=state.at,
                balances={k: str(v) for k, v in state.balances.items()},
                overage=state.overage, period_start=state.period_start or state.at,
                period_usage=state.period_usage)
    except IntegrityError as exc:
        if "entsnapshot_unique_at" in str(exc):
            return None
        raise
