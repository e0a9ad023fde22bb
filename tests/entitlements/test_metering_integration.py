"""The table-driven cases again, with real events: ingested through metering and read back by
the feature's meter (sum), so the value is computed exactly as the API computes it."""

from decimal import Decimal

import pytest

from entitlements import selectors, services
from tests.entitlements.factories import FeatureFactory
from tests.entitlements.test_services_value import CASES, T0, at, build
from tests.ledgers.factories import CustomerFactory
from tests.metering.factories import MeterFactory, event, ingest

D = Decimal


def _ingest_all(customer, events, name):
    for index, (ts, amount) in enumerate(events):
        result = ingest(event(customer, ts=ts, name=name, key=f"{name}-{index}",
                              amount=str(amount)), now=ts)
        assert not getattr(result, "validation_failed", None), result


@pytest.mark.django_db
@pytest.mark.parametrize("case", [c for c in CASES if c.name != "no_grants"],
                         ids=[c.name for c in CASES if c.name != "no_grants"])
def test_value_with_real_events(case):
    meter = MeterFactory(event_name="llm_tokens", aggregation="sum", value_property="amount")
    feature = FeatureFactory(meter=meter)
    customer = CustomerFactory()
    entitlement, _ = build(case, feature=feature, customer=customer)
    _ingest_all(customer, case.events, "llm_tokens")
    value = selectors.entitlement_value(entitlement=entitlement, at=case.at)
    assert (value.balance, value.usage, value.overage) == (D(case.balance), D(case.usage),
                                                          D(case.overage))
    # and the same without any snapshot, and with a snapshot from the job's service
    assert value == selectors.entitlement_value(entitlement=entitlement, at=case.at,
                                                use_snapshots=False)


@pytest.mark.django_db
def test_group_by_filters_and_count_meter():
    meter = MeterFactory(event_name="req", aggregation="count", group_by={"region": "region"})
    customer = CustomerFactory()
    feature = services.feature_create(actor="t", key="eu_requests", name="EU requests",
                                      meter_slug=meter.slug,
                                      meter_group_by_filters={"region": "eu"})
    entitlement = services.entitlement_create(
        actor="t", customer=customer, type="metered", feature_key=feature.key,
        usage_period={"interval": "month", "anchor": T0}, measure_usage_from=T0, now=T0)
    services.grant_create(actor="t", entitlement=entitlement, amount=D(10), effective_at=T0,
                          expiration=None, now=T0)
    for i, region in enumerate(["eu", "us", "eu", "eu"]):
        ts = at(hours=i + 1)
        ingest(event(customer, ts=ts, name="req", key=f"r{i}", region=region), now=ts)
    value = selectors.entitlement_value(entitlement=entitlement, at=at(days=1))
    assert (value.usage, value.balance) == (D(3), D(7))


@pytest.mark.django_db
def test_unique_count_meter_period_usage():
    meter = MeterFactory(event_name="login", aggregation="unique_count", value_property="user")
    customer = CustomerFactory()
    feature = services.feature_create(actor="t", key="seats", name="Seats",
                                      meter_slug=meter.slug)
    entitlement = services.entitlement_create(
        actor="t", customer=customer, type="metered", feature_key=feature.key,
        usage_period={"interval": "month", "anchor": T0}, measure_usage_from=T0, now=T0)
    services.grant_create(actor="t", entitlement=entitlement, amount=D(5), effective_at=T0,
                          expiration=None, now=T0)
    services.grant_create(actor="t", entitlement=entitlement, amount=D(1),
                          effective_at=at(days=1), expiration=None, now=T0)
    for i, (ts, user) in enumerate([(at(hours=1), "a"), (at(hours=2), "a"),
                                    (at(days=2), "b"), (at(days=3), "a")]):
        ingest(event(customer, ts=ts, name="login", key=f"l{i}", user=user), now=ts)
    value = selectors.entitlement_value(entitlement=entitlement, at=at(days=4))
    assert (value.usage, value.balance) == (D(2), D(4))


@pytest.mark.django_db
def test_feature_validation_against_meter():
    from billing_project.errors import InvalidInput

    max_meter = MeterFactory(aggregation="max")
    grouped = MeterFactory(group_by={"model": "model"})
    with pytest.raises(InvalidInput) as exc:
        services.feature_create(actor="t", key="a", name="A", meter_slug=max_meter.slug)
    assert exc.value.code == "meter_aggregation_not_supported"
    with pytest.raises(InvalidInput) as exc:
        services.feature_create(actor="t", key="b", name="B", meter_slug=grouped.slug,
                                meter_group_by_filters={"region": "eu"})
    assert exc.value.code == "invalid_group_by_filter"
    with pytest.raises(InvalidInput) as exc:
        services.feature_create(actor="t", key="c", name="C", meter_slug="nope")
    assert exc.value.code == "meter_not_found"
    ok = services.feature_create(actor="t", key="d", name="D", meter_slug=grouped.slug,
                                 meter_group_by_filters={"model": "gpt"})
    assert ok.meter_group_by_filters == {"model": "gpt"}


@pytest.mark.django_db
@pytest.mark.parametrize("change", ["amend", "deprecate"])
def test_changing_past_usage_drops_later_snapshots(change):
    from entitlements.models import BalanceSnapshot
    from metering import services as metering_services

    meter = MeterFactory(event_name="llm_tokens", aggregation="sum", value_property="amount")
    customer = CustomerFactory()
    feature = FeatureFactory(meter=meter)
    entitlement = services.entitlement_create(
        actor="t", customer=customer, type="metered", feature_key=feature.key,
        usage_period={"interval": "month", "anchor": T0}, measure_usage_from=T0, now=T0)
    services.grant_create(actor="t", entitlement=entitlement, amount=D(100), effective_at=T0,
                          expiration=None, now=T0)
    ingest(event(customer, ts=at(hours=1), name="llm_tokens", key="e1", amount="30"),
           now=at(hours=1))
    read_at = at(days=5)
    assert services.snapshot_save(entitlement=entitlement, as_of=read_at) is not None
    assert selectors.entitlement_value(entitlement=entitlement, at=read_at).balance == D(70)

    if change == "amend":
        metering_services.event_amend(event_id="e1", event_name="llm_tokens",
                                      properties={"amount": "10"}, timestamp=at(hours=1),
                                      customer_id=customer.pk, actor="t")
        expected = D(90)
    else:
        metering_services.event_deprecate(event_id="e1", actor="t")
        expected = D(100)
    assert not BalanceSnapshot.objects.filter(entitlement=entitlement).exists()
    value = selectors.entitlement_value(entitlement=entitlement, at=read_at)
    assert value.balance == expected
    assert value == selectors.entitlement_value(entitlement=entitlement, at=read_at,
                                                use_snapshots=False)
