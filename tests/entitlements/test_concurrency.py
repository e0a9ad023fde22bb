"""Concurrent writes: one winner, the others get the domain error, nothing doubled."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from billing_project.errors import DomainError
from entitlements import services
from entitlements.models import Entitlement, EntitlementGrant, EntitlementReset, Feature
from tests.entitlements.factories import FeatureFactory
from tests.ledgers.factories import CustomerFactory

T0 = datetime(2025, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=5)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _race(fn, n=4):
    results, barrier = [], threading.Barrier(n)

    def run():
        try:
            barrier.wait()
            results.append(("ok", fn()))
        except DomainError as exc:
            results.append(("error", exc.code))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _metered(customer, feature):
    return services.entitlement_create(
        actor="t", customer=customer, type="metered", feature_key=feature.key,
        usage_period={"interval": "month", "anchor": T0}, measure_usage_from=T0, now=T0)


def test_one_active_entitlement_per_feature():
    customer, feature = CustomerFactory(), FeatureFactory()
    results = _race(lambda: _metered(customer, feature).pk)
    winners = [value for kind, value in results if kind == "ok"]
    assert len(winners) == 1
    assert sorted(v for k, v in results if k == "error") == ["entitlement_exists"] * 3
    assert Entitlement.objects.get().pk == winners[0]


def test_one_active_feature_per_key():
    results = _race(lambda: services.feature_create(actor="t", key="k", name="K").pk)
    assert [k for k, _ in results].count("ok") == 1
    assert Feature.objects.count() == 1


def test_void_once():
    entitlement = _metered(CustomerFactory(), FeatureFactory())
    grant = services.grant_create(actor="t", entitlement=entitlement, amount=Decimal(5),
                                  effective_at=T0, expiration=None, now=T0)
    results = _race(lambda: services.grant_void(actor="t", grant=grant, now=NOW).pk)
    assert sorted(k for k, _ in results) == ["error", "error", "error", "ok"]
    assert {v for k, v in results if k == "error"} == {"grant_already_voided"}


def test_reset_once_per_instant():
    entitlement = _metered(CustomerFactory(), FeatureFactory())
    at = NOW - timedelta(hours=1)
    results = _race(lambda: services.entitlement_reset(actor="t", entitlement=entitlement,
                                                       effective_at=at, now=NOW).pk)
    assert sorted(k for k, _ in results) == ["error", "error", "error", "ok"]
    assert EntitlementReset.objects.count() == 1


def test_concurrent_grants_all_land():
    entitlement = _metered(CustomerFactory(), FeatureFactory())
    _race(lambda: services.grant_create(actor="t", entitlement=entitlement, amount=Decimal(1),
                                        effective_at=T0, expiration=None, now=NOW).pk)
    assert EntitlementGrant.objects.count() == 4
