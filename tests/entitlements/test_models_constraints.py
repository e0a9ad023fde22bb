"""Each named constraint, provoked directly (the services check first; these are the backstop)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from entitlements.models import (
    BalanceSnapshot,
    Entitlement,
    EntitlementGrant,
    EntitlementReset,
    Feature,
)
from tests.entitlements.factories import EntitlementFactory, FeatureFactory

pytestmark = pytest.mark.django_db
T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def metered():
    return EntitlementFactory(type="metered", feature=FeatureFactory(),
                              usage_period_interval="month", usage_period_anchor=T0,
                              measure_usage_from=T0)


def _grant(entitlement, **kw):
    values = {"entitlement": entitlement, "amount": Decimal(10), "effective_at": T0,
              "max_rollover_amount": Decimal(10), **kw}
    return EntitlementGrant.objects.create(**values)


CASES = {
    "feature_key_pattern": lambda m: Feature.objects.create(key="Bad-Key", name="x"),
    "feature_key_unique_active": lambda m: Feature.objects.create(key=m.feature.key, name="x"),
    "feature_filters_need_meter": lambda m: Feature.objects.create(
        key="x", name="x", meter_group_by_filters={"a": "b"}),
    "feature_meter_slug_and_id": lambda m: Feature.objects.create(
        key="x", name="x", meter_slug="no_such_meter"),
    "entitlement_one_active_per_feature": lambda m: EntitlementFactory(
        customer=m.customer, feature=m.feature),
    "entitlement_metered_has_usage_period": lambda m: EntitlementFactory(type="metered"),
    "entitlement_config_static_only": lambda m: EntitlementFactory(config={"a": 1}),
    "entitlement_type_valid": lambda m: EntitlementFactory(type="gold"),
    "entitlement_issue_after_reset_positive": lambda m: EntitlementFactory(
        issue_after_reset=Decimal(0)),
    "entgrant_amount_positive": lambda m: _grant(m, amount=Decimal(0)),
    "entgrant_min_rollover_non_negative": lambda m: _grant(m, min_rollover_amount=Decimal(-1)),
    "entgrant_min_rollover_le_max": lambda m: _grant(m, min_rollover_amount=Decimal(11)),
    "entgrant_expiration_complete": lambda m: _grant(m, expiration_duration="day"),
    "entgrant_recurrence_complete": lambda m: _grant(m, recurrence_interval="day"),
    "entgrant_one_issue_after_reset": lambda m: [
        _grant(m, source="issue_after_reset") for _ in range(2)],
    "entreset_one_per_instant": lambda m: [
        EntitlementReset.objects.create(entitlement=m, effective_at=T0, anchor=T0)
        for _ in range(2)],
    "entsnapshot_unique_at": lambda m: [
        BalanceSnapshot.objects.create(entitlement=m, at=T0, balances={}, overage=0,
                                       period_start=T0, period_usage=0) for _ in range(2)],
    "entsnapshot_overage_non_negative": lambda m: BalanceSnapshot.objects.create(
        entitlement=m, at=T0 + timedelta(days=1), balances={}, overage=-1, period_start=T0,
        period_usage=0),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_constraint(metered, name):
    with pytest.raises(IntegrityError) as exc, transaction.atomic():
        CASES[name](metered)
    assert name in str(exc.value)


def test_valid_rows_pass(metered):
    _grant(metered, expiration_duration="day", expiration_count=1,
           expires_at=T0 + timedelta(days=1), recurrence_interval="week", recurrence_anchor=T0)
    assert Entitlement.objects.count() == 1
