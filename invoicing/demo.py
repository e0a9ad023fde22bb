"""Demo billing for `make run` (idempotent): a plan with three pricing models, three customers
billed monthly, last month's invoices issued (one paid, one paid and partly refunded, one
open) and a draft for the current month."""

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from invoicing import selectors, services
from invoicing.models import Invoice, Plan, PricingRule
from ledgers.models import Customer
from ledgers.services import customer_create

ACTOR = "system:demo"
METERS = [
    {"slug": "api_calls", "name": "API calls", "event_name": "api_call",
     "aggregation": "count"},
    {"slug": "tokens", "name": "LLM tokens", "event_name": "llm_completion",
     "aggregation": "sum", "value_property": "tokens", "group_by": {"model": "model"}},
    {"slug": "unique_users", "name": "Active users", "event_name": "api_call",
     "aggregation": "unique_count", "value_property": "user_id"},
]
RULES = [
    {"name": "API calls", "meter_slug": "api_calls", "model": "per_unit",
     "unit_amount": Decimal("0.002")},
    {"name": "LLM tokens", "meter_slug": "tokens", "model": "graduated",
     "tiers": [{"up_to": Decimal(100_000), "unit_amount": Decimal("0.00002")},
               {"up_to": Decimal(1_000_000), "unit_amount": Decimal("0.000015"),
                "flat_amount": Decimal("1")},
               {"up_to": None, "unit_amount": Decimal("0.00001"),
                "flat_amount": Decimal("5")}]},
    {"name": "Active users (per 10)", "meter_slug": "unique_users", "model": "package",
     "unit_amount": Decimal("4"), "package_size": 10},
]
CUSTOMERS = [
    ("inv-demo-paid", "Hooli", "ap@hooli.example"),
    ("inv-demo-refunded", "Pied Piper", "billing@piedpiper.example"),
    ("inv-demo-open", "Soylent", "finance@soylent.example"),
]
EVENTS_PER_MONTH = 300


def _month_start(t: datetime, back: int = 0) -> datetime:
    index = t.year * 12 + t.month - 1 - back
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def _meters() -> None:
    from metering import services as metering_services
    from metering.models import Meter

    for values in METERS:
        if not Meter.objects.filter(slug=values["slug"], archived_at__isnull=True).exists():
            metering_services.meter_create(actor=ACTOR, **values)


def _plan() -> Plan:
    plan = Plan.objects.filter(key="demo_usage").first()
    if plan is None:
        plan = services.plan_create(actor=ACTOR, key="demo_usage", name="Usage (demo)",
                                    currency="USD", billing_interval="month")
    if not PricingRule.objects.filter(plan=plan).exists():
        for rule in RULES:
            services.pricing_rule_create(actor=ACTOR, plan_id=plan.pk, currency="USD", **rule)
    return plan


def _events(customer: Customer, start: datetime, end: datetime) -> list[dict]:
    rng = random.Random(f"{customer.external_customer_id}-{start:%Y%m}")
    span = (end - start).total_seconds()
    events = []
    for index in range(EVENTS_PER_MONTH):
        ts = start + timedelta(seconds=rng.uniform(0, span - 1))
        if index % 2:
            body = {"event_name": "llm_completion",
                    "properties": {"tokens": rng.randint(100, 20_000),
                                   "model": rng.choice(["small", "large"])}}
        else:
            body = {"event_name": "api_call",
                    "properties": {"user_id": f"u{rng.randint(1, 40)}"}}
        events.append({**body, "timestamp": ts.isoformat(), "customer_id": customer.pk,
                       "idempotency_key": f"invdemo-{customer.external_customer_id}-"
                                          f"{start:%Y%m}-{index}"})
    return sorted(events, key=lambda e: e["timestamp"])


def _ingest(events: list[dict]) -> None:
    from metering import services as metering_services

    by_day: dict[str, list[dict]] = {}
    for body in events:
        by_day.setdefault(body["timestamp"][:10], []).append(body)
    for day_events in by_day.values():
        # Older than the ingestion grace period: ingest "as of" the day's newest event.
        as_of = datetime.fromisoformat(day_events[-1]["timestamp"]) + timedelta(seconds=1)
        metering_services.events_ingest(events=day_events, actor=ACTOR, now=as_of)


def load(*, stdout) -> None:
    now = timezone.now().astimezone(UTC)
    this_month, last_month = _month_start(now), _month_start(now, 1)
    _meters()
    plan = _plan()
    made = 0
    for external_id, name, email in CUSTOMERS:
        customer = Customer.objects.filter(external_customer_id=external_id).first()
        if customer is None:
            customer = customer_create(actor=ACTOR, name=name, email=email,
                                       external_customer_id=external_id, currency="USD",
                                       plan_id=plan.pk, billing_anchor=_month_start(now, 2))
            _ingest(_events(customer, last_month, this_month))
            _ingest(_events(customer, this_month, max(now - timedelta(minutes=1),
                                                      this_month + timedelta(minutes=1))))
        invoice, created = services.invoice_create_for_period(
            customer=customer, plan=plan, period_start=last_month, period_end=this_month,
            actor=ACTOR)
        made += created
        if invoice.status == "draft":
            invoice = services.invoice_issue(invoice=invoice, actor=ACTOR,
                                             at=this_month + timedelta(days=1))
        if external_id != "inv-demo-open" and invoice.status == "issued":
            invoice = services.invoice_mark_paid(invoice=invoice, actor=ACTOR,
                                                 payment_received_date=this_month
                                                 + timedelta(days=3), external_id="demo")
        if (external_id == "inv-demo-refunded" and invoice.status == "paid"
                and invoice.amount_refunded == 0 and invoice.amount_paid > 0):
            refund = (invoice.amount_paid / 2).quantize(Decimal("0.01"))
            if refund > 0:
                services.invoice_refund(invoice=invoice, actor=ACTOR, amount=refund,
                                        reason="Demo: service outage credit")
        if external_id == "inv-demo-paid":
            start, end = selectors.billing_period(customer=customer, plan=plan, at=now)
            if not Invoice.objects.filter(customer=customer, period_start=start).exists():
                services.invoice_create_for_period(customer=customer, plan=plan,
                                                   period_start=start, period_end=end,
                                                   actor=ACTOR)
                made += 1
    if made:
        stdout.write(f"Demo invoices created: {made}")
