import io
from datetime import timedelta

import pytest
from django.utils import timezone

from billing_project.jobs import run
from ledgers import demo as ledgers_demo
from metering import demo, selectors
from metering.models import Event, Meter, UsageRollup
from tests.ledgers.factories import CustomerFactory
from tests.metering.factories import MeterFactory, event, ingest

pytestmark = pytest.mark.django_db


def test_demo_is_idempotent():
    ledgers_demo.load(stdout=io.StringIO())
    demo.load(stdout=io.StringIO())
    events, meters = Event.objects.count(), Meter.objects.count()
    assert meters == 3 and events == 4 * demo.EVENTS_PER_CUSTOMER
    assert Event.objects.filter(customer__isnull=True).count() == 0
    out = io.StringIO()
    demo.load(stdout=out)
    assert (Event.objects.count(), Meter.objects.count()) == (events, meters)
    assert out.getvalue() == ""
    tokens = selectors.meter_get("tokens")
    now = timezone.now()
    acme = Event.objects.filter(external_customer_id="acme").first().customer
    assert selectors.usage_total(meter=tokens, customer=acme, start=now - timedelta(days=32),
                                 end=now + timedelta(hours=1)) > 0


@pytest.mark.django_db(transaction=True)
def test_verify_usage_rollups_repairs_drift():
    customer = CustomerFactory()
    meter = MeterFactory(aggregation="count", value_property=None)
    now = timezone.now()
    ingest(event(customer, ts=now - timedelta(minutes=5)))
    run("compact_usage_rollups", as_of=now)
    assert UsageRollup.objects.count() == 2  # its hour and its day
    assert run("verify_usage_rollups", as_of=now)["repaired_days"] == 0
    UsageRollup.objects.all().delete()
    assert run("verify_usage_rollups", as_of=now)["repaired_days"] == 1
    assert selectors.usage_total(meter=meter, customer=customer, start=now - timedelta(hours=1),
                                 end=now) == 1
    assert run("verify_usage_rollups", as_of=now)["repaired_days"] == 0
