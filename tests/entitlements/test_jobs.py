import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection

from billing_project import jobs as job_registry
from entitlements import selectors, services
from entitlements.models import BalanceSnapshot, Entitlement, EntitlementGrant, EntitlementReset
from tests.entitlements.factories import FeatureFactory
from tests.ledgers.factories import CustomerFactory
from tests.metering.factories import MeterFactory, event, ingest

D = Decimal
T0 = datetime(2025, 1, 1, tzinfo=UTC)
AS_OF = datetime(2025, 3, 10, tzinfo=UTC)
READ_TIMES = [T0 + timedelta(days=d, hours=h) for d in (0, 3, 7, 20, 31, 35, 45, 59, 60, 68)
              for h in (0, 5)]


def _world():
    meter = MeterFactory(event_name="calls", aggregation="sum", value_property="n")
    feature = FeatureFactory(meter=meter)
    customer = CustomerFactory()
    entitlement = services.entitlement_create(
        actor="t", customer=customer, type="metered", feature_key=feature.key,
        usage_period={"interval": "month", "anchor": T0}, measure_usage_from=T0,
        issue_after_reset=D(20), preserve_overage_at_reset=True, now=T0)
    services.grant_create(actor="t", entitlement=entitlement, amount=D(100), effective_at=T0,
                          expiration={"duration": "year", "count": 1},
                          recurrence={"interval": "week"}, now=T0)
    services.grant_create(actor="t", entitlement=entitlement, amount=D(50), priority=2,
                          effective_at=T0 + timedelta(days=3), expiration=None,
                          max_rollover_amount=D(10), now=T0)
    for i in range(60):
        ts = T0 + timedelta(days=i, hours=i % 24, minutes=i)
        ingest(event(customer, ts=ts, name="calls", key=f"c{i}", n=str(7 + i % 13)), now=ts)
    return Entitlement.objects.select_related("feature", "customer").get(pk=entitlement.pk)


def _values(entitlement, **kwargs):
    return [selectors.entitlement_value(entitlement=entitlement, at=t, **kwargs)
            for t in READ_TIMES]


def _run_all():
    return {name: job_registry.run(name, as_of=AS_OF)
            for name in ("reset_entitlements", "issue_recurring_grants", "snapshot_balances")}


@pytest.mark.django_db
def test_jobs_are_registered():
    names = set(job_registry.load_jobs())
    assert {"reset_entitlements", "issue_recurring_grants", "snapshot_balances"} <= names


@pytest.mark.django_db
def test_jobs_materialise_without_changing_reads():
    entitlement = _world()
    before = _values(entitlement, use_snapshots=False)

    first = _run_all()
    assert first["reset_entitlements"]["resets_recorded"] == 2  # Feb 1 and Mar 1
    assert first["snapshot_balances"]["snapshots"] + first["reset_entitlements"]["snapshots"] \
        + first["issue_recurring_grants"]["snapshots"] >= 1
    resets = list(EntitlementReset.objects.filter(entitlement=entitlement)
                  .values_list("effective_at", "kind"))
    assert sorted(resets) == [(datetime(2025, 2, 1, tzinfo=UTC), "automatic"),
                              (datetime(2025, 3, 1, tzinfo=UTC), "automatic")]
    counts = (EntitlementReset.objects.count(), BalanceSnapshot.objects.count(),
              EntitlementGrant.objects.count())
    assert BalanceSnapshot.objects.filter(at__gt=AS_OF - timedelta(days=1)).count() == 0

    second = _run_all()
    assert second["reset_entitlements"]["resets_recorded"] == 0
    assert (EntitlementReset.objects.count(), BalanceSnapshot.objects.count(),
            EntitlementGrant.objects.count()) == counts

    assert _values(entitlement) == before
    assert _values(entitlement, use_snapshots=False) == before

    # a manual reset after the snapshots: they are invalidated, reads still agree
    services.entitlement_reset(actor="t", entitlement=entitlement,
                               effective_at=datetime(2025, 3, 5, tzinfo=UTC),
                               preserve_overage=False, now=AS_OF)
    assert not BalanceSnapshot.objects.filter(at__gte=datetime(2025, 3, 5, tzinfo=UTC)).exists()
    assert _values(entitlement) == _values(entitlement, use_snapshots=False)


@pytest.mark.django_db
def test_run_job_command(capsys):
    _world()
    call_command("run_job", "snapshot_balances", "--as-of", AS_OF.isoformat())
    call_command("run_job", "reset_entitlements", "--as-of", AS_OF.isoformat())
    call_command("run_job", "issue_recurring_grants", "--as-of", AS_OF.isoformat())
    assert BalanceSnapshot.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_jobs_concurrently():
    entitlement = _world()
    before = _values(entitlement, use_snapshots=False)
    errors = []

    def work(name):
        try:
            job_registry.run(name, as_of=AS_OF)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    names = ["reset_entitlements", "issue_recurring_grants", "snapshot_balances"] * 3
    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    _run_all()  # whatever was skipped under lock is done now
    counts = (EntitlementReset.objects.count(), BalanceSnapshot.objects.count())
    _run_all()
    assert (EntitlementReset.objects.count(), BalanceSnapshot.objects.count()) == counts
    assert EntitlementReset.objects.count() == 2
    assert _values(entitlement) == before


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_grant_and_snapshot_never_leave_a_stale_snapshot():
    entitlement = _world()
    errors = []
    now = datetime(2025, 3, 9, tzinfo=UTC)

    def grant():
        try:
            services.grant_create(actor="t", entitlement=entitlement, amount=D(5),
                                  effective_at=datetime(2025, 3, 2, tzinfo=UTC),
                                  expiration=None, now=now)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)
        finally:
            connection.close()

    def snap():
        try:
            services.snapshot_save(entitlement=entitlement, as_of=AS_OF)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=f) for f in (snap, grant, snap, grant)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _values(entitlement) == _values(entitlement, use_snapshots=False)


@pytest.mark.django_db
def test_a_broken_entitlement_does_not_stop_the_jobs(monkeypatch):
    good = _world()
    broken = _world()
    real_burn = selectors.burn

    def burn(entitlement, **kwargs):
        if entitlement.pk == broken.pk:
            raise RuntimeError("corrupt entitlement")
        return real_burn(entitlement, **kwargs)

    monkeypatch.setattr(selectors, "burn", burn)
    result = job_registry.run("snapshot_balances", as_of=AS_OF)
    assert result["failed"] == 1 and result["snapshots"] == 1
    assert BalanceSnapshot.objects.filter(entitlement=good).exists()
    assert job_registry.run("reset_entitlements", as_of=AS_OF)["failed"] == 1


@pytest.mark.django_db
def test_snapshots_invalidate_for_changed_usage():
    entitlement = _world()
    _run_all()
    assert BalanceSnapshot.objects.filter(entitlement=entitlement).count() >= 2
    other = _world()
    _run_all()
    dropped = services.snapshots_invalidate(customer_id=entitlement.customer_id,
                                            since=datetime(2025, 2, 1, tzinfo=UTC))
    assert dropped >= 1
    assert not BalanceSnapshot.objects.filter(entitlement=entitlement,
                                              at__gte=datetime(2025, 2, 1, tzinfo=UTC)).exists()
    assert BalanceSnapshot.objects.filter(entitlement=other,
                                          at__gte=datetime(2025, 2, 1, tzinfo=UTC)).exists()
    assert _values(entitlement) == _values(entitlement, use_snapshots=False)
