"""The `world` fixture: a plan with three pricing models, a customer anchored on Oct 1 2026,
usage in October (and some on Nov 1, in the next period). Its clock reads Nov 20 2026 (the
November period is the current one) whatever the date of the run."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
import time_machine

from tests.invoicing.factories import MeterFactory, PlanFactory, PricingRuleFactory, ingest
from tests.ledgers.factories import CustomerFactory

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)  # the world's present: November is current
GRAD_TIERS = [{"up_to": "100", "unit_amount": "0.10", "flat_amount": "0"},
              {"up_to": None, "unit_amount": "0.05", "flat_amount": "5"}]


@pytest.fixture
def world(db):
    """A plan with three pricing models, one customer anchored on Oct 1, October usage; the
    clock runs from NOW (tests reading "the current period" mean November 2026)."""
    with time_machine.travel(NOW, tick=True):
        yield _world()


def _world():
    plan = PlanFactory(currency="USD")
    calls = MeterFactory(slug="api_calls")
    storage = MeterFactory(slug="storage")
    seats = MeterFactory(slug="seats")
    per_unit = PricingRuleFactory(plan=plan, meter_id=calls.pk, model="per_unit",
                                  unit_amount=D("0.015"), name="API calls")
    graduated = PricingRuleFactory(plan=plan, meter_id=storage.pk, model="graduated",
                                   unit_amount=None, tiers=GRAD_TIERS, name="Storage")
    package = PricingRuleFactory(plan=plan, meter_id=seats.pk, model="package",
                                 unit_amount=D("10"), package_size=5, name="Seats")
    customer = CustomerFactory(plan_id=plan.pk, billing_anchor=OCT, created_at=OCT)
    day = OCT + timedelta(days=3)
    ingest(customer, calls, 101, day)          # 101 * 0.015 = 1.515 -> 1.52 (half-even)
    ingest(customer, storage, 150, day)        # 100*0.10 + 50*0.05 + 5 = 17.50
    ingest(customer, seats, 6, day)            # 2 packages -> 20
    ingest(customer, calls, 1000, NOV + timedelta(hours=1))  # next period
    return {"plan": plan, "customer": customer, "rules": (per_unit, graduated, package),
            "meters": (calls, storage, seats)}


