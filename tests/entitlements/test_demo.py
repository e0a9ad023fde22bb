import io

import pytest

from entitlements import demo, selectors
from entitlements.models import Entitlement, EntitlementGrant, Feature
from ledgers import demo as ledgers_demo
from metering import demo as metering_demo

pytestmark = pytest.mark.django_db


def test_demo_loads_idempotently_with_usage():
    out = io.StringIO()
    ledgers_demo.load(stdout=out)
    metering_demo.load(stdout=out)
    demo.load(stdout=out)
    counts = (Feature.objects.count(), Entitlement.objects.count(),
              EntitlementGrant.objects.count())
    assert counts == (2, 3, 5)
    demo.load(stdout=out)
    assert (Feature.objects.count(), Entitlement.objects.count(),
            EntitlementGrant.objects.count()) == counts
    for entitlement in Entitlement.objects.filter(type="metered"):
        value = selectors.entitlement_value(entitlement=entitlement)
        assert value.usage >= 0  # > 0 except in the first minute of a month
        assert value.has_access in (True, False)
