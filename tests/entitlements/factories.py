import factory

from entitlements.models import Entitlement, Feature
from tests.ledgers.factories import CustomerFactory


class FeatureFactory(factory.django.DjangoModelFactory):
    """A metered feature on meter slug ``tokens`` (the meter is not looked up here)."""

    class Meta:
        model = Feature

    key = factory.Sequence(lambda n: f"feature_{n}")
    name = factory.Sequence(lambda n: f"Feature {n}")
    meter_slug = "tokens"


class StaticFeatureFactory(FeatureFactory):
    meter_slug = None


class EntitlementFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Entitlement

    customer = factory.SubFactory(CustomerFactory)
    feature = factory.SubFactory(StaticFeatureFactory)
    type = Entitlement.Type.BOOLEAN
