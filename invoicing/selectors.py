"""Reads: plans, pricing rules, invoices, and the pricing of a period's usage (API.md §6)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Q, QuerySet

from billing_project.errors import InvalidInput, NotFound
from invoicing import pricing
from invoicing.models import CreditNote, Invoice, Plan, PricingRule
from ledgers import periods
from ledgers.models import Customer

ZERO = Decimal(0)


def plan_get(*, plan_id: str) -> Plan:
    try:
        return Plan.objects.get(pk=plan_id)
    except Plan.DoesNotExist:
        raise NotFound(f"No plan '{plan_id}'.", code="plan_not_found") from None


def plan_list() -> QuerySet[Plan]:
    return Plan.objects.all()


def pricing_rule_get(*, rule_id: str) -> PricingRule:
    try:
        return PricingRule.objects.get(pk=rule_id)
    except PricingRule.DoesNotExist:
        raise NotFound(f"No pricing rule '{rule_id}'.", code="pricing_rule_not_found") from None


def pricing_rule_list() -> QuerySet[PricingRule]:
    return PricingRule.objects.all()


def invoice_get(*, invoice_id: str) -> Invoice:
    try:
        return Invoice.objects.select_related("customer").get(pk=invoice_id)
    except Invoice.DoesNotExist:
        raise NotFound(f"No invoice '{invoice_id}'.", code="invoice_not_found") from None


def invoice_list() -> QuerySet[Invoice]:
    return Invoice.objects.select_related("customer").prefetch_related("line_items")


def credit_note_list(*, invoice: Invoice) -> QuerySet[CreditNote]:
    return CreditNote.objects.filter(invoice=invoice)


# --------------------------------------------------------------------------------------------
# Billing periods and pricing
# --------------------------------------------------------------------------------------------


def customer_plan(*, customer: Customer) -> Plan:
    """The customer's plan; InvalidInput(customer_has_no_plan) when there is none."""
    plan = Plan.objects.filter(pk=customer.plan_id).first() if customer.plan_id else None
    if plan is None:
        raise InvalidInput(f"Customer '{customer.pk}' has no plan to bill.",
                           code="customer_has_no_plan", field="customer_id")
    return plan


def billing_anchor(customer: Customer) -> datetime:
    return customer.billing_anchor or customer.created_at


def billing_period(*, customer: Customer, plan: Plan, at: datetime) -> tuple[datetime, datetime]:
    """The customer's billing period [start, end) containing ``at``, in their time zone."""
    return periods.period_containing(billing_anchor(customer), plan.billing_interval, at,
                                     customer.timezone or "UTC")


def rules_for_period(*, plan: Plan, period_start: datetime) -> list[PricingRule]:
    """The plan's rules and the rules for every customer in the plan's currency that were not
    archived before the period started, oldest first."""
    return list(
        PricingRule.objects.filter(Q(plan=plan) | Q(plan__isnull=True, currency=plan.currency))
        .filter(Q(archived_at__isnull=True) | Q(archived_at__gt=period_start))
        .order_by("created_at", "id")
    )


class PricingCache:
    """Rules and meters looked up once per job run (or request) instead of per customer."""

    def __init__(self):
        self.rules: dict[tuple[str, datetime], list[PricingRule]] = {}
        self.meters: dict[str, object] = {}
        # (meter id, start, end, filters) -> {customer id: usage} for every customer at once
        self.bulk_usage: dict[tuple, dict[str, Decimal]] = {}

    def prefetch_usage(self, *, plan: Plan, start: datetime, end: datetime) -> None:
        """One metering query per rule for all customers of a period (many customers sharing
        one billing period), instead of one per customer and rule."""
        from metering import selectors as metering_selectors

        for rule in self.rules_for(plan=plan, period_start=start):
            key = (rule.meter_id, start, end, tuple(sorted((rule.filters or {}).items())))
            if key in self.bulk_usage:
                continue
            rows = metering_selectors.usage(meter=self.meters[rule.meter_id], start=start,
                                            end=end, filters=rule.filters or None,
                                            per_customer=True)
            self.bulk_usage[key] = {row.customer_id: row.value for row in rows
                                    if row.customer_id is not None}

    def rules_for(self, *, plan: Plan, period_start: datetime) -> list[PricingRule]:
        key = (plan.pk, period_start)
        if key not in self.rules:
            self.rules[key] = rules_for_period(plan=plan, period_start=period_start)
            self._load_meters([rule.meter_id for rule in self.rules[key]])
        return self.rules[key]

    def _load_meters(self, meter_ids: list[str]) -> None:
        from metering.models import Meter

        missing = [i for i in meter_ids if i not in self.meters]
        if missing:
            self.meters.update({m.pk: m for m in Meter.objects.filter(pk__in=missing)})

    def usage_total(self, *, meter_id: str, customer: Customer, start: datetime,
                    end: datetime, filters: dict) -> Decimal:
        from metering import selectors as metering_selectors

        bulk = self.bulk_usage.get((meter_id, start, end,
                                    tuple(sorted((filters or {}).items()))))
        if bulk is not None:
            return bulk.get(customer.pk) or ZERO
        self._load_meters([meter_id])
        return metering_selectors.usage_total(meter=self.meters[meter_id], customer=customer,
                                              start=start, end=end, filters=filters or None)


@dataclass
class LineDraft:
    rule: PricingRule
    quantity: Decimal
    result: pricing.PriceResult
    credits_applied: Decimal = ZERO

    @property
    def amount(self) -> Decimal:
        return self.result.amount

    def tiers_json(self) -> list[dict]:
        return [{key: (None if value is None else str(value) if isinstance(value, Decimal)
                       else value)
                 for key, value in line.as_dict().items()} for line in self.result.tiers]


@dataclass
class InvoiceDraft:
    customer: Customer
    plan: Plan
    currency: str
    period_start: datetime
    period_end: datetime
    lines: list[LineDraft] = field(default_factory=list)

    @property
    def subtotal(self) -> Decimal:
        return sum((line.amount for line in self.lines), ZERO)

    @property
    def credits_applied(self) -> Decimal:
        return sum((line.credits_applied for line in self.lines), ZERO)

    @property
    def amount_due(self) -> Decimal:
        return self.subtotal - self.credits_applied


def price_rule_usage(*, rule: PricingRule, quantity: Decimal) -> pricing.PriceResult:
    return pricing.price(rule.model, max(quantity, ZERO), unit_amount=rule.unit_amount,
                         tiers=rule.tiers, package_size=rule.package_size,
                         currency=rule.currency)


def invoice_draft_compute(*, customer: Customer, plan: Plan, start: datetime,
                          end: datetime, cache: PricingCache | None = None) -> InvoiceDraft:
    """Price the customer's usage in [start, end) with the plan's rules (no credits yet)."""
    cache = cache or PricingCache()
    draft = InvoiceDraft(customer=customer, plan=plan, currency=plan.currency,
                         period_start=start, period_end=end)
    for rule in cache.rules_for(plan=plan, period_start=start):
        quantity = cache.usage_total(meter_id=rule.meter_id, customer=customer, start=start,
                                     end=end, filters=rule.filters)
        quantity = max(Decimal(quantity), ZERO)
        draft.lines.append(LineDraft(rule=rule, quantity=quantity,
                                     result=price_rule_usage(rule=rule, quantity=quantity)))
    return draft


def _simulate_credits(*, draft: InvoiceDraft, checkpoints: dict, at: datetime,
                      more: list[tuple[InvoiceDraft, dict]] = ()) -> None:
    """Credits the preview would apply: what was already paid for each line, plus what the
    usable blocks would pay now for the rest, in burn order (nothing is written). ``more``
    are further (draft, checkpoints) pairs burning the same blocks afterwards."""
    from invoicing.settlement import has_credit_ledger

    pairs = [(draft, checkpoints), *more]
    if not has_credit_ledger(customer=draft.customer, currency=draft.currency):
        for each, _ in pairs:
            for line in each.lines:
                line.credits_applied = ZERO
        return
    from grants import burn
    from grants.models import CreditBlock
    from ledgers.models import Ledger

    ledger = Ledger.objects.filter(customer=draft.customer, currency=draft.currency).first()
    blocks = {b.id: b for b in (burn.BlockState.of(block) for block in CreditBlock.objects.filter(
        customer=draft.customer, currency=draft.currency, status=CreditBlock.Status.ACTIVE,
        balance__gt=0)) if b.is_active_at(at)}
    headroom = sum((b.balance for b in blocks.values()), ZERO)
    if ledger is not None:
        headroom -= ledger.debt + ledger.pending
    quantum = pricing.quantize_for(draft.currency)
    for each, marks in pairs:
        for line in each.lines:
            checkpoint = marks.get(line.rule.id)
            paid = min(checkpoint.paid, line.amount) if checkpoint else ZERO
            accounted = checkpoint.cost if checkpoint else ZERO
            extra = ZERO
            wanted = min(line.amount - accounted, line.amount - paid)
            if wanted > 0 and headroom > 0 and blocks:
                plan = burn.plan_deduction(
                    blocks=list(blocks.values()), debt=ZERO, amount=min(wanted, headroom),
                    at=at, usage=burn.UsageContext(price_id=line.rule.id,
                                                   meter_slug=line.rule.meter_slug))
                extra = sum((take for _, take in plan.burned), ZERO).quantize(quantum,
                                                                            "ROUND_DOWN")
                left = extra
                for block_id, take in plan.burned:  # burn the simulated blocks, in order
                    take = min(take, left)
                    left -= take
                    block = blocks[block_id]
                    blocks[block_id] = replace(block, balance=block.balance - take)
                headroom -= extra
            line.credits_applied = paid + extra


def invoice_preview(*, customer: Customer, start: datetime | None = None,
                    end: datetime | None = None, at: datetime | None = None) -> InvoiceDraft:
    """The invoice that would be issued now for [start, end) (default: the current period),
    with the credits that would pay it."""
    from django.utils import timezone

    from invoicing.settlement import last_checkpoints

    plan = customer_plan(customer=customer)
    at = at or timezone.now()
    if start is None or end is None:
        period_start, period_end = billing_period(customer=customer, plan=plan,
                                                  at=start or at)
        start = start or period_start
        end = end or period_end
    if end <= start:
        raise InvalidInput("timeframe_end must be after timeframe_start.",
                           code="invalid_timeframe", field="timeframe_end")
    draft = invoice_draft_compute(customer=customer, plan=plan, start=start, end=end)
    invoice = (Invoice.objects.filter(customer=customer, kind="usage", period_start=start,
                                      period_end=end).exclude(status="draft")
               .only("id", "status").order_by()[:1])
    invoice = invoice[0] if invoice else None
    checkpoints = last_checkpoints(customer=customer, period_start=start)
    if invoice is not None:  # issued already: its credits are final (void: returned)
        for line in draft.lines:
            checkpoint = checkpoints.get(line.rule.id)
            paid = checkpoint.paid if checkpoint and invoice.status != "void" else ZERO
            line.credits_applied = min(paid, line.amount)
        return draft
    _simulate_credits(draft=draft, checkpoints=checkpoints, at=at)
    return draft


def issued_usage_lock_reason(*, customer_id: str | None, start: datetime,
                             end: datetime) -> str | None:
    """metering's lock checker: usage inside an issued (or paid) invoice is final."""
    queryset = Invoice.objects.filter(kind="usage", status__in=("issued", "paid"),
                                      period_start__lt=end, period_end__gt=start)
    if customer_id is not None:
        queryset = queryset.filter(customer_id=customer_id)
    invoice = next(iter(queryset.values_list("id", flat=True).order_by()[:1]), None)
    if invoice is None:
        return None
    return f"The usage is part of issued invoice '{invoice}'."


def unsettled_usage_amount(*, customer: Customer, currency: str, since=None,
                           as_of: datetime) -> Decimal:
    """grants' balance read hook: priced usage that credits would pay but that no job has
    written yet (the current period, and the previous one until its invoice exists), so that
    balances are exact before `settle_usage` / `close_billing_periods` run."""
    from invoicing.settlement import has_credit_ledger, last_checkpoints

    if not customer.plan_id:
        return ZERO
    plan = Plan.objects.filter(pk=customer.plan_id, currency=currency).first()
    if plan is None or not has_credit_ledger(customer=customer, currency=currency):
        return ZERO
    start, end = billing_period(customer=customer, plan=plan, at=as_of)
    windows = []
    anchor = billing_anchor(customer)
    if start > anchor:
        previous_start, _ = billing_period(customer=customer, plan=plan,
                                           at=start - timedelta(microseconds=1))
        if not Invoice.objects.filter(customer=customer, kind="usage",
                                      period_start=previous_start, period_end=start).exists():
            windows.append((previous_start, start, start))
    if not Invoice.objects.filter(customer=customer, kind="usage", period_start=start,
                                  period_end=end).exclude(status="draft").exists():
        windows.append((start, end, min(as_of, end)))
    pairs = [(invoice_draft_compute(customer=customer, plan=plan, start=window_start,
                                    end=usage_end),
              last_checkpoints(customer=customer, period_start=window_start))
             for window_start, _, usage_end in windows]
    if not pairs:
        return ZERO
    _simulate_credits(draft=pairs[0][0], checkpoints=pairs[0][1], at=as_of, more=pairs[1:])
    return sum((line.credits_applied - (marks[line.rule.id].paid
                                        if line.rule.id in marks else ZERO)
                for draft, marks in pairs for line in draft.lines), ZERO)
