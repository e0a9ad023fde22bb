from decimal import Decimal

import factory
from django.apps import apps

from invoicing.models import Plan, PricingRule


class MeterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = apps.get_model("metering", "Meter")

    slug = factory.Sequence(lambda n: f"meter_{n}")
    name = factory.LazyAttribute(lambda o: o.slug)
    event_name = factory.LazyAttribute(lambda o: o.slug)
    aggregation = "sum"
    value_property = "value"
    group_by = factory.LazyFunction(dict)


class PlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Plan

    key = factory.Sequence(lambda n: f"plan_{n}")
    name = factory.LazyAttribute(lambda o: f"Plan {o.key}")
    currency = "USD"
    billing_interval = "month"


class PricingRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PricingRule

    name = factory.Sequence(lambda n: f"Rule {n}")
    meter_id = factory.LazyAttribute(lambda o: MeterFactory().pk)
    meter_slug = factory.LazyAttribute(
        lambda o: apps.get_model("metering", "Meter").objects.get(pk=o.meter_id).slug)
    plan = factory.SubFactory(PlanFactory)
    currency = factory.LazyAttribute(lambda o: o.plan.currency if o.plan else "USD")
    model = "per_unit"
    unit_amount = Decimal("0.10")
    tiers = None
    package_size = None


_event_counter = iter(range(10**9))


def ingest(customer, meter, value, timestamp, **properties):
    """Ingest one event for ``meter`` through metering (as if sent right after ``timestamp``)."""
    from datetime import timedelta

    from billing_project.api import format_timestamp
    from metering.services import events_ingest

    key = f"evt-{next(_event_counter)}-{customer.pk}"
    props = {**properties}
    if meter.value_property:
        props[meter.value_property] = value
    result = events_ingest(events=[{
        "idempotency_key": key, "event_name": meter.event_name,
        "timestamp": format_timestamp(timestamp), "customer_id": customer.pk,
        "properties": props}], actor="test", now=timestamp + timedelta(minutes=1))
    assert not result.validation_failed, result.validation_failed
    return key
