import factory

from entitlements.models import Entitlement, Feature
from tests.ledgers.factories import CustomerFactory
from tests.metering.factories import MeterFactory


class FeatureFactory(factory.django.DjangoModelFactory):
    """A metered feature on a sum meter of its own (pass `meter=` to share one)."""

    class Meta:
        model = Feature

    key = factory.Sequence(lambda n: f"feature_{n}")
    name = factory.Sequence(lambda n: f"Feature {n}")
    meter = factory.SubFactory(MeterFactory, event_name="tokens")
    meter_slug = factory.LazyAttribute(lambda feature: feature.meter.slug if feature.meter
                                       else None)


class StaticFeatureFactory(FeatureFactory):
    meter = None


class EntitlementFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Entitlement

    customer = factory.SubFactory(CustomerFactory)
    feature = factory.SubFactory(StaticFeatureFactory)
    type = Entitlement.Type.BOOLEAN
