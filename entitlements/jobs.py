"""Scheduled jobs of the entitlements app (API.md §7).

They only materialise what reads already compute (automatic resets, recurrences, balances), so
reads never depend on whether they ran. Each unit of work is one entitlement under its row lock
(``SKIP LOCKED``: a unit another worker holds is being done), and is idempotent by constraint.
"""

import logging

from django.db.models import Q

from billing_project.jobs import job
from entitlements import selectors, services
from entitlements.burndown import grant_refills
from entitlements.models import Entitlement, EntitlementGrant

logger = logging.getLogger("billing.entitlements.jobs")


def _safely(fn, entitlement, **kwargs):
    """One entitlement's failure must not stop the others: logged, counted, retried next run."""
    try:
        return fn(entitlement=entitlement, **kwargs), False
    except Exception:  # noqa: BLE001 - each unit of work is its own transaction
        logger.exception("entitlement %s skipped", entitlement.pk)
        return None, True


def _metered(as_of):
    return (Entitlement.objects.filter(type=Entitlement.Type.METERED,
                                       measure_usage_from__lt=as_of)
            .filter(Q(deleted_at__isnull=True) | Q(deleted_at__gt=selectors.snapshot_cutoff(as_of)))
            .order_by("pk"))


@job("reset_entitlements", every_seconds=300,
     description="Records usage-period resets of metered entitlements (rollover happens in "
                 "reads), issues missing issue_after_reset grants, and snapshots balances at "
                 "resets older than the ingest grace period.")
def reset_entitlements(*, as_of) -> dict:
    recorded = snapshots = skipped = failed = 0
    cutoff = selectors.snapshot_cutoff(as_of)
    for entitlement in _metered(as_of).iterator():
        rows, error = _safely(services.automatic_resets_record, entitlement, as_of=as_of,
                              skip_locked=True)
        failed += error
        if rows is None:
            skipped += not error
            continue
        recorded += len(rows)
        schedule = selectors.usage_period_of(entitlement)
        last_reset = schedule.period_at(cutoff)[0] if cutoff >= schedule.measure_from else None
        if last_reset is not None and last_reset > schedule.measure_from:
            saved, error = _safely(services.snapshot_save, entitlement, as_of=as_of,
                                   at=last_reset, skip_locked=True)
            snapshots += bool(saved)
            failed += error
    return {"resets_recorded": recorded, "snapshots": snapshots, "skipped_locked": skipped,
            "failed": failed}


@job("issue_recurring_grants", every_seconds=300,
     description="Materialises grant recurrences: snapshots each recurring grant's "
                 "entitlement at its latest refill older than the ingest grace period.")
def issue_recurring_grants(*, as_of) -> dict:
    cutoff = selectors.snapshot_cutoff(as_of)
    grants = (EntitlementGrant.objects.filter(recurrence_interval__isnull=False,
                                              effective_at__lt=cutoff)
              .filter(Q(voided_at__isnull=True) | Q(voided_at__gt=cutoff))
              .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=cutoff))
              .select_related("entitlement", "entitlement__customer").order_by("pk"))
    latest: dict[str, object] = {}
    for grant in grants.iterator():
        entitlement = grant.entitlement
        start = max(grant.effective_at, entitlement.measure_usage_from or grant.effective_at)
        refills = grant_refills(effective_at=grant.effective_at, ends_at=None,
                                interval=grant.recurrence_interval,
                                anchor=grant.recurrence_anchor,
                                start=max(start, _recent(grant, cutoff)), end=cutoff,
                                tz=entitlement.customer.timezone or "UTC")
        if refills:
            previous = latest.get(entitlement.pk)
            latest[entitlement.pk] = max(refills[-1], previous) if previous else refills[-1]
    snapshots = failed = 0
    for entitlement_id, at in latest.items():
        entitlement = Entitlement.objects.get(pk=entitlement_id)
        saved, error = _safely(services.snapshot_save, entitlement, as_of=as_of, at=at,
                               skip_locked=True)
        snapshots += bool(saved)
        failed += error
    return {"recurring_grants": len(latest), "snapshots": snapshots, "failed": failed}


def _recent(grant, cutoff):
    """Only the last two recurrence periods matter for the latest refill."""
    from ledgers import periods

    interval = periods.parse_interval(grant.recurrence_interval)
    return periods.add_interval(cutoff, interval, -2, grant.entitlement.customer.timezone
                                or "UTC")


@job("snapshot_balances", every_seconds=3600,
     description="Saves each metered entitlement's balance at its latest segment boundary "
                 "older than the ingest grace period (a cache for reads).")
def snapshot_balances(*, as_of) -> dict:
    saved = failed = 0
    for entitlement in _metered(as_of).iterator():
        row, error = _safely(services.snapshot_save, entitlement, as_of=as_of,
                             skip_locked=True)
        saved += bool(row)
        failed += error
    return {"snapshots": saved, "failed": failed}
