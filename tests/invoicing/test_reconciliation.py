"""A month of generated usage for 50 customers with mixed credit blocks: invoices reconcile
with the credit ledger, and re-running the jobs changes nothing."""

import random
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.db.models import Sum

from billing_project.api import format_timestamp
from grants import services as grants_services
from invoicing import billing
from invoicing.models import Invoice, InvoiceLineItem, UsageSettlement
from ledgers.models import LedgerEntry
from metering.services import events_ingest
from tests.invoicing.conftest import GRAD_TIERS, NOV, OCT
from tests.invoicing.factories import MeterFactory, PlanFactory, PricingRuleFactory
from tests.ledgers.factories import CustomerFactory

pytestmark = pytest.mark.django_db

CUSTOMERS = 50
GRACE = timedelta(days=1)


def _world(rng):
    plan = PlanFactory(currency="USD")
    calls = MeterFactory(slug="r_calls", aggregation="count", value_property=None)
    storage = MeterFactory(slug="r_storage")
    seats = MeterFactory(slug="r_seats", aggregation="max")
    rules = [
        PricingRuleFactory(plan=plan, meter_id=calls.pk, model="per_unit",
                           unit_amount=D("0.0125"), name="calls"),
        PricingRuleFactory(plan=plan, meter_id=storage.pk, model="graduated",
                           unit_amount=None, tiers=GRAD_TIERS, name="storage"),
        PricingRuleFactory(plan=plan, meter_id=seats.pk, model="package",
                           unit_amount=D("7"), package_size=3, name="seats"),
    ]
    customers = [CustomerFactory(plan_id=plan.pk, billing_anchor=OCT, created_at=OCT,
                                 allow_negative_balance=rng.random() < 0.5)
                 for _ in range(CUSTOMERS)]
    for index, customer in enumerate(customers):
        kind = index % 5
        if kind == 1:  # small block: runs out mid-month
            _block(customer, rng.randint(1, 10))
        elif kind == 2:  # large block: pays everything
            _block(customer, 10_000)
        elif kind == 3:  # two blocks, different priorities, one filtered to storage only
            _block(customer, rng.randint(5, 30), priority=2)
            _block(customer, rng.randint(5, 30), filters=[
                {"field": "price_id", "operator": "includes", "values": [rules[1].pk]}])
        elif kind == 4:  # credits in another currency: never used for USD usage
            _block(customer, 500, currency="EUR")
    return plan, (calls, storage, seats), rules, customers


def _block(customer, amount, currency="USD", **kwargs):
    grants_services.credit_increment(customer=customer, amount=D(amount) + D("0.003"),
                                     currency=currency, actor="test", **kwargs)


def _ingest_month(rng, meters, customers, until_day):
    calls, storage, seats = meters
    by_day = {}
    for customer in customers:
        for n in range(rng.randint(5, 40)):
            day = rng.randint(0, until_day - 1)
            ts = OCT + timedelta(days=day, seconds=rng.randint(0, 86_399))
            meter = rng.choice(meters)
            props = {} if meter is calls else {"value": str(rng.randint(1, 120))}
            by_day.setdefault(day, []).append({
                "idempotency_key": f"r-{customer.pk}-{until_day}-{n}",
                "event_name": meter.event_name, "timestamp": format_timestamp(ts),
                "customer_id": customer.pk, "properties": props})
    for day, events in sorted(by_day.items()):
        now = OCT + timedelta(days=day + 1)
        result = events_ingest(events=events, actor="test", now=now)
        assert not result.validation_failed


def _state():
    invoices = list(Invoice.objects.order_by("id").values_list(
        "id", "status", "invoice_number", "subtotal", "credits_applied", "amount_due"))
    entries = LedgerEntry.objects.count()
    return invoices, entries, UsageSettlement.objects.count()


def test_month_reconciles_and_jobs_are_idempotent():
    rng = random.Random(6)
    plan, meters, rules, customers = _world(rng)
    # Usage arrives during the month; settle_usage runs now and then.
    _ingest_month(rng, meters, customers, until_day=10)
    billing.settle_usage(as_of=OCT + timedelta(days=10))
    _ingest_month(rng, meters, customers, until_day=20)
    billing.settle_usage(as_of=OCT + timedelta(days=20))
    _ingest_month(rng, meters, customers, until_day=31)
    billing.settle_usage(as_of=OCT + timedelta(days=30))

    closed = billing.close_billing_periods(as_of=NOV + timedelta(hours=1), grace=GRACE)
    assert closed == {"created": CUSTOMERS, "issued": 0, "failed": 0}
    issued = billing.close_billing_periods(as_of=NOV + GRACE + timedelta(hours=1), grace=GRACE)
    assert issued == {"created": 0, "issued": CUSTOMERS, "failed": 0}

    invoices = Invoice.objects.filter(period_start=OCT, period_end=NOV)
    assert invoices.count() == CUSTOMERS
    assert set(invoices.values_list("status", flat=True)) == {"issued", "paid"}
    sums = invoices.aggregate(subtotal=Sum("subtotal"), credits=Sum("credits_applied"),
                              due=Sum("amount_due"))
    assert sums["subtotal"] - sums["credits"] == sums["due"]
    assert sums["credits"] > 0 and sums["due"] > 0
    numbers = sorted(int(n.split("-")[1]) for n in invoices.values_list("invoice_number",
                                                                        flat=True))
    assert numbers == list(range(1, CUSTOMERS + 1))  # gap-free

    usage_decrements = LedgerEntry.objects.filter(
        entry_type="decrement", price_id__in=[r.pk for r in rules])
    returned = LedgerEntry.objects.filter(entry_type="amendment")
    ledger_net = ((usage_decrements.aggregate(s=Sum("amount"))["s"] or 0)
                  - (returned.aggregate(s=Sum("amount"))["s"] or 0))
    assert ledger_net == sums["credits"]
    assert not usage_decrements.filter(credit_block__isnull=True).exists()  # never debt
    for invoice in invoices:
        lines = InvoiceLineItem.objects.filter(invoice=invoice)
        assert invoice.subtotal == sum(line.amount for line in lines)
        assert invoice.credits_applied == sum(line.credits_applied for line in lines)
        assert invoice.amount_due >= 0
        mine = usage_decrements.filter(customer=invoice.customer).aggregate(
            s=Sum("amount"))["s"] or 0
        assert mine == invoice.credits_applied, invoice.customer_id
        exp = D(1).scaleb(-2)
        assert invoice.credits_applied == invoice.credits_applied.quantize(exp)
    # Customers with only EUR credits (or none) paid nothing from credits.
    for index, customer in enumerate(customers):
        if index % 5 in (0, 4):
            assert invoices.get(customer=customer).credits_applied == 0

    before = _state()
    billing.settle_usage(as_of=OCT + timedelta(days=30))
    billing.settle_usage(as_of=NOV + GRACE + timedelta(hours=1))
    billing.close_billing_periods(as_of=NOV + timedelta(hours=1), grace=GRACE)
    billing.close_billing_periods(as_of=NOV + GRACE + timedelta(hours=1), grace=GRACE)
    assert _state() == before
