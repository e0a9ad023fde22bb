"""The work behind the invoicing jobs, split per customer so that it can fan out.

Each unit of work is idempotent: an invoice is unique per (customer, period), a draft is issued
under its row lock (SKIP LOCKED shares the work between concurrent runs), and usage settlement
runs under the customer's credit ledger lock and writes only what its checkpoint lacks.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Max

from billing_project.errors import DomainError
from invoicing import selectors, services, settlement
from invoicing.models import Invoice, Plan
from ledgers import periods
from ledgers.models import Customer

logger = logging.getLogger("billing.invoicing")

MAX_PERIODS_PER_RUN = 12
CHUNK = 200
BULK_MIN_CUSTOMERS = 20
TICK = timedelta(microseconds=1)


def finished_periods(*, customer: Customer, plan: Plan, as_of: datetime,
                     last_billed_end: datetime | None) -> list[tuple[datetime, datetime]]:
    """Finished billing periods still to invoice, oldest first: the latest one, and when the
    customer was billed before, every period since the last invoiced one (bounded per run)."""
    anchor = selectors.billing_anchor(customer)
    tz = customer.timezone or "UTC"
    current_start, _ = periods.period_containing(anchor, plan.billing_interval, as_of, tz)
    result = []
    end = current_start
    while len(result) < MAX_PERIODS_PER_RUN and end > anchor:
        if last_billed_end is not None and end <= last_billed_end:
            break
        start, _ = periods.period_containing(anchor, plan.billing_interval, end - TICK, tz)
        result.append((start, end))
        if last_billed_end is None:
            break
        end = start
    return list(reversed(result))


def close_customer_periods(*, customer: Customer, plan: Plan, as_of: datetime,
                           grace: timedelta | None = None,
                           cache: selectors.PricingCache | None = None) -> tuple[int, int]:
    """Create the customer's missing drafts; a draft already past its grace period is issued
    in the same transaction (priced once). Returns (created, issued)."""
    last_end = (Invoice.objects.filter(customer=customer, kind="usage")
                .order_by("-period_end").values_list("period_end", flat=True).first())
    created = issued = 0
    for start, end in finished_periods(customer=customer, plan=plan, as_of=as_of,
                                       last_billed_end=last_end):
        with transaction.atomic():
            invoice, made = services.invoice_create_for_period(
                customer=customer, plan=plan, period_start=start, period_end=end, cache=cache)
            if made and end + (grace or timedelta(0)) <= as_of:
                services.invoice_issue(invoice=invoice, actor="system:close_billing_periods",
                                       at=as_of, reprice=False)
                issued += 1
        created += made
    return created, issued


def issue_due_drafts(*, as_of: datetime, grace: timedelta | None,
                     customer_ids: list[str] | None = None,
                     cache: selectors.PricingCache | None = None) -> int:
    """Issue the drafts past their grace period, oldest first: customers without credits in
    bulk, the others one by one (their credits settle under their ledger locks)."""
    cache = cache or selectors.PricingCache()
    queryset = Invoice.objects.filter(status="draft", kind="usage",
                                      period_end__lte=as_of - (grace or timedelta(0)))
    if customer_ids is not None:
        queryset = queryset.filter(customer_id__in=customer_ids)
    rows = list(queryset.order_by("period_end", "id")
                .values_list("id", "customer_id", "currency"))
    issued = 0
    for offset in range(0, len(rows), CHUNK):
        chunk = rows[offset:offset + CHUNK]
        credits = _credit_currencies(list({customer_id for _, customer_id, _ in chunk}))
        bulk = [i for i, customer_id, currency in chunk if (customer_id, currency) not in credits]
        issued += services.invoices_issue_bulk(invoice_ids=bulk, as_of=as_of, cache=cache)
        for invoice_id, customer_id, currency in chunk:
            if (customer_id, currency) not in credits:
                continue
            with transaction.atomic():
                invoice = (Invoice.objects.select_for_update(skip_locked=True)
                           .filter(pk=invoice_id, status="draft").first())
                if invoice is None:
                    continue  # issued or being issued by another worker
                services.invoice_issue(invoice=invoice, actor="system:close_billing_periods",
                                       at=as_of, cache=cache)
                issued += 1
    return issued


def _plans() -> dict[str, Plan]:
    return {plan.pk: plan for plan in Plan.objects.all()}


def billed_customers(customer_ids: list[str] | None = None):
    queryset = Customer.objects.filter(plan_id__isnull=False).order_by("pk")
    if customer_ids is not None:
        queryset = queryset.filter(pk__in=customer_ids)
    return queryset




def _credit_currencies(customer_ids: list[str]) -> set[tuple[str, str]]:
    try:
        from grants.models import CreditBlock
    except ImportError:  # pragma: no cover - credit ledger not installed
        return set()
    return set(CreditBlock.objects.filter(customer_id__in=customer_ids)
               .values_list("customer_id", "currency").distinct())


def close_chunk(*, customers: list[Customer], plans: dict[str, Plan], as_of: datetime,
                grace: timedelta | None, cache: selectors.PricingCache) -> dict:
    """Close the finished periods of a chunk of customers. Customers without credits in the
    plan's currency and one period to bill are written in bulk; the rest one by one (their
    credits are settled under their ledger locks)."""
    ids = [c.pk for c in customers]
    last_ends = dict(Invoice.objects.filter(customer_id__in=ids, kind="usage")
                     .values("customer_id").annotate(last=Max("period_end"))
                     .values_list("customer_id", "last"))
    credits = _credit_currencies(ids)
    bulk, single = [], []
    for customer in customers:
        plan = plans.get(customer.plan_id)
        if plan is None:
            continue
        todo = finished_periods(customer=customer, plan=plan, as_of=as_of,
                                last_billed_end=last_ends.get(customer.pk))
        if len(todo) == 1 and (customer.pk, plan.currency) not in credits:
            bulk.append((customer, plan, *todo[0]))
        elif todo:
            single.append((customer, plan))
    created = issued = failed = 0
    groups: dict[tuple, int] = {}
    for _, plan, start, end in bulk:
        groups[(plan.pk, start, end)] = groups.get((plan.pk, start, end), 0) + 1
    for (plan_id, start, end), count in groups.items():
        if count >= BULK_MIN_CUSTOMERS:
            cache.prefetch_usage(plan=plans[plan_id], start=start, end=end)
    if bulk:
        made, done = services.invoices_close_bulk(items=bulk, as_of=as_of, grace=grace,
                                                  cache=cache)
        created += made
        issued += done
    for customer, plan in single:
        try:
            made, done = close_customer_periods(customer=customer, plan=plan, as_of=as_of,
                                                grace=grace, cache=cache)
        except DomainError:
            failed += 1
            logger.exception("close_billing_periods failed for %s", customer.pk)
            continue
        created += made
        issued += done
    return {"created": created, "issued": issued, "failed": failed}


def close_billing_periods(*, as_of: datetime, grace: timedelta | None,
                          customer_ids: list[str] | None = None) -> dict:
    plans = _plans()
    cache = selectors.PricingCache()
    # Older drafts first, so that invoice numbers follow the periods.
    total = {"created": 0, "failed": 0,
             "issued": issue_due_drafts(as_of=as_of, grace=grace, customer_ids=customer_ids,
                                        cache=cache)}
    chunk: list[Customer] = []
    for customer in billed_customers(customer_ids).iterator(chunk_size=CHUNK):
        chunk.append(customer)
        if len(chunk) == CHUNK:
            for key, value in close_chunk(customers=chunk, plans=plans, as_of=as_of,
                                          grace=grace, cache=cache).items():
                total[key] += value
            chunk = []
    if chunk:
        for key, value in close_chunk(customers=chunk, plans=plans, as_of=as_of, grace=grace,
                                      cache=cache).items():
            total[key] += value
    return total


@transaction.atomic
def settle_customer(*, customer: Customer, plan: Plan, as_of: datetime,
                    cache: selectors.PricingCache | None = None) -> int:
    """Settle the customer's current period up to ``as_of``; returns checkpoints written."""
    start, end = selectors.billing_period(customer=customer, plan=plan, at=as_of)
    if Invoice.objects.filter(customer=customer, kind="usage", period_start=start,
                              period_end=end).exclude(status="draft").exists():
        return 0  # issued: final
    usage_end = min(as_of, end)
    draft = selectors.invoice_draft_compute(customer=customer, plan=plan, start=start,
                                            end=usage_end, cache=cache)
    before = {rule_id: c.step for rule_id, c in settlement.last_checkpoints(
        customer=customer, period_start=start).items()}
    after = settlement.settle_lines(customer=customer, currency=plan.currency,
                                    period_start=start, period_end=end, usage_end=usage_end,
                                    lines=draft.lines)
    return sum(1 for rule_id, c in after.items() if c.step != before.get(rule_id, 0))


def settle_usage(*, as_of: datetime, customer_ids: list[str] | None = None) -> dict:
    plans = _plans()
    cache = selectors.PricingCache()
    customers = written = 0
    for plan in plans.values():
        queryset = billed_customers(customer_ids).filter(
            plan_id=plan.pk, credit_blocks__currency=plan.currency).distinct()
        for customer in queryset.iterator(chunk_size=500):
            customers += 1
            written += settle_customer(customer=customer, plan=plan, as_of=as_of, cache=cache)
    return {"customers": customers, "checkpoints": written}
