"""Usage paid from credits as it happens (API.md §4, last part).

For a customer with credit blocks in a plan's currency, each pricing rule's usage in the current
billing period is priced cumulatively (rounded once, like the invoice line it will become); the
increase since the last checkpoint is burned from the blocks in burn-down order, at most what the
blocks can cover (the rest stays on the invoice as amount due, never as ledger debt). Decrements
carry ``price_id`` (the rule) and, when they cover one event, its ``event_id``; each checkpoint
(`UsageSettlement`) names the window of events it covers.

Everything for one (customer, currency) runs under that credit ledger's row lock, so two
concurrent runs write each decrement once: the second finds the first's checkpoint.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from django.apps import apps
from django.utils import timezone

from invoicing import pricing
from invoicing.models import Invoice, PricingRule, UsageSettlement
from ledgers.models import Customer

ZERO = Decimal(0)


def _grants():
    from grants import burn, services
    from grants.models import CreditBlock

    return services, burn, CreditBlock


def has_credit_ledger(*, customer: Customer, currency: str) -> bool:
    """Whether the customer ever had a credit block in ``currency`` (else nothing to burn)."""
    try:
        block_model = apps.get_model("grants", "CreditBlock")
    except LookupError:
        return False
    return block_model.objects.filter(customer=customer, currency=currency).exists()


@dataclass
class Checkpoint:
    step: int
    usage_end: datetime | None
    cost: Decimal
    paid: Decimal


def last_checkpoint(*, customer: Customer, rule: PricingRule,
                    period_start: datetime) -> Checkpoint:
    row = (UsageSettlement.objects.filter(customer=customer, pricing_rule=rule,
                                          period_start=period_start)
           .order_by("-step").values("step", "usage_end", "cost", "paid").first())
    if row is None:
        return Checkpoint(step=0, usage_end=None, cost=ZERO, paid=ZERO)
    return Checkpoint(**row)


def last_checkpoints(*, customer: Customer, period_start: datetime) -> dict[str, Checkpoint]:
    """The latest checkpoint per rule id for the customer's period."""
    result: dict[str, Checkpoint] = {}
    rows = (UsageSettlement.objects.filter(customer=customer, period_start=period_start)
            .order_by("pricing_rule_id", "-step")
            .values("pricing_rule_id", "step", "usage_end", "cost", "paid"))
    for row in rows:
        rule_id = row.pop("pricing_rule_id")
        result.setdefault(rule_id, Checkpoint(**row))
    return result


def _coverable(*, ledger, customer: Customer, rule: PricingRule, amount: Decimal,
               currency: str, at: datetime) -> Decimal:
    """How much of ``amount`` the usable blocks can pay now (burn order, block filters,
    holds respected), rounded down to the currency's minor unit."""
    _, burn, block_model = _grants()
    ledger.refresh_from_db(fields=["debt", "pending", "balance"])
    blocks = [burn.BlockState.of(b) for b in block_model.objects.filter(
        ledger=ledger, status=block_model.Status.ACTIVE, balance__gt=0)]
    if not blocks:
        return ZERO
    usable = sum((b.balance for b in blocks if b.is_active_at(at)), ZERO)
    headroom = usable - ledger.debt - ledger.pending
    if headroom <= 0:
        return ZERO
    plan = burn.plan_deduction(
        blocks=blocks, debt=ZERO, amount=min(amount, headroom), at=at,
        usage=burn.UsageContext(price_id=rule.id, meter_slug=rule.meter_slug))
    covered = sum((take for _, take in plan.burned), ZERO)
    return covered.quantize(pricing.quantize_for(currency), rounding=ROUND_DOWN)


def covered_event_id(*, rule: PricingRule, customer: Customer, start: datetime,
                     end: datetime) -> str | None:
    """The event id when exactly one counted event of the rule's meter lies in [start, end)."""
    ids = list(_events_query(rule=rule, customer=customer, start=start, end=end)
               .values_list("event_id", flat=True)[:2])
    return ids[0] if len(ids) == 1 else None


def _events_query(*, rule: PricingRule, customer: Customer, start: datetime, end: datetime):
    event_model = apps.get_model("metering", "Event")
    meter_model = apps.get_model("metering", "Meter")
    meter = meter_model.objects.filter(pk=rule.meter_id).first()
    if meter is None:
        return event_model.objects.none()
    return event_model.objects.filter(customer=customer, event_name=meter.event_name,
                                      counted=True, timestamp__gte=start,
                                      timestamp__lt=end).order_by("timestamp", "event_id")


def settlement_events(*, settlement: UsageSettlement) -> list[str]:
    """The ids of the events a checkpoint covers (its usage window)."""
    return list(_events_query(rule=settlement.pricing_rule, customer=settlement.customer,
                              start=settlement.usage_start, end=settlement.usage_end)
                .values_list("event_id", flat=True))


def settle_rule(*, customer: Customer, rule: PricingRule, period_start: datetime,
                period_end: datetime, usage_end: datetime, quantity: Decimal, cost: Decimal,
                invoice: Invoice | None = None, actor="system:settle_usage",
                ledger=None) -> Checkpoint:
    """Bring the rule's checkpoint for the period to ``cost`` (the period's priced usage up to
    ``usage_end``). Call with the customer's credit ledger locked (``settle_customer`` does).
    Returns the new (or unchanged) checkpoint."""
    services, _, _ = _grants()
    last = last_checkpoint(customer=customer, rule=rule, period_start=period_start)
    currency = rule.currency
    now = timezone.now()
    paid = last.paid
    entries: list[str] = []
    if cost > last.cost:
        amount = min(cost - last.cost, cost - last.paid)
        pay = _coverable(ledger=ledger, customer=customer, rule=rule, amount=amount,
                         currency=currency, at=now) if amount > 0 else ZERO
        if pay > 0:
            start = last.usage_end or period_start
            ledger.refresh_from_db(fields=["last_sequence_number"])
            before = ledger.last_sequence_number
            entry = services.credit_decrement(
                customer=customer, amount=pay, actor=actor, currency=currency,
                description=f"Usage: {rule.name}", price_id=rule.id,
                meter_slug=rule.meter_slug, invoice_id=invoice.pk if invoice else None,
                event_id=covered_event_id(rule=rule, customer=customer, start=start,
                                          end=usage_end),
                metadata={"period_start": period_start.isoformat(),
                          "usage_end": usage_end.isoformat()})
            entries = _decrements_after(ledger=entry.ledger, sequence_number=before,
                                        price_id=rule.id)
            paid += pay
    elif cost < last.paid:
        returned, entries = _return_credits(customer=customer, rule=rule,
                                            period_start=period_start,
                                            amount=last.paid - cost, actor=actor)
        paid -= returned
    if cost == last.cost and paid == last.paid:
        return last
    cost = max(cost, paid)  # credits that could not be returned stay accounted
    UsageSettlement.objects.create(
        customer=customer, pricing_rule=rule, currency=currency, period_start=period_start,
        period_end=period_end, usage_start=last.usage_end or period_start,
        usage_end=max(usage_end, last.usage_end or usage_end), step=last.step + 1,
        quantity=quantity, cost=cost, paid=paid, step_paid=paid - last.paid,
        entry_ids=entries, invoice=invoice)
    return Checkpoint(step=last.step + 1, usage_end=usage_end, cost=cost, paid=paid)


def _decrements_after(*, ledger, sequence_number: int, price_id: str) -> list[str]:
    """The decrement entries one write appended (one per block) after ``sequence_number``."""
    from ledgers.models import LedgerEntry

    return list(LedgerEntry.objects.filter(
        ledger_id=ledger.pk, sequence_number__gt=sequence_number, entry_type="decrement",
        price_id=price_id).order_by("sequence_number").values_list("id", flat=True))


def _return_credits(*, customer: Customer, rule: PricingRule, period_start: datetime,
                    amount: Decimal, actor) -> tuple[Decimal, list[str]]:
    """Give back up to ``amount`` of the rule's decrements for the period (newest first) with
    amendment entries; blocks that expired or were voided cannot take credits back."""
    return return_credits(customer=customer, rules=[rule], period_start=period_start,
                          amount=amount, actor=actor)


def return_credits(*, customer: Customer, rules: list[PricingRule], period_start: datetime,
                   amount: Decimal | None, actor, reason: str = "") -> tuple[Decimal, list[str]]:
    """Amend back the net decrements of ``rules`` for the period (all when amount is None)."""
    from ledgers.models import LedgerEntry

    services, _, block_model = _grants()
    ids = [i for row in UsageSettlement.objects.filter(
        customer=customer, pricing_rule__in=rules, period_start=period_start)
        .values_list("entry_ids", flat=True) for i in row]
    net: dict[str, Decimal] = defaultdict(lambda: ZERO)
    order: list[str] = []
    for entry in LedgerEntry.objects.filter(pk__in=ids).order_by("-sequence_number"):
        if entry.credit_block_id is None:
            continue
        sign = 1 if entry.entry_type == "decrement" else -1
        if entry.credit_block_id not in net:
            order.append(entry.credit_block_id)
        net[entry.credit_block_id] += sign * entry.amount
    remaining = amount
    returned = ZERO
    written: list[str] = []
    blocks = {b.pk: b for b in block_model.objects.filter(pk__in=order)}
    for block_id in order:
        give = net[block_id] if remaining is None else min(net[block_id], remaining)
        block = blocks[block_id]
        give = min(give, block.initial_amount - block.balance)
        if give <= 0 or block.status not in ("active", "pending_payment"):
            continue
        entry = services.credit_block_amend(customer=customer, block_id=block_id, amount=give,
                                            actor=actor, reason=reason,
                                            description="Usage credits returned")
        written.append(entry.pk)
        returned += give
        if remaining is not None:
            remaining -= give
            if remaining <= 0:
                break
    return returned, written


def settle_lines(*, customer: Customer, currency: str, period_start: datetime,
                 period_end: datetime, usage_end: datetime, lines, invoice: Invoice | None = None,
                 actor="system:settle_usage") -> dict[str, Checkpoint]:
    """Settle every priced line of a period under the credit ledger's lock (call inside a
    transaction). ``lines`` are `selectors.LineDraft`s priced up to ``usage_end``."""
    if not has_credit_ledger(customer=customer, currency=currency):
        return {}
    services, _, _ = _grants()
    ledger = services.ledger_lock(customer=customer, currency=currency)
    services.credit_ledger_settle(ledger_id=ledger.pk, at=timezone.now())
    return {
        line.rule.id: settle_rule(customer=customer, rule=line.rule, period_start=period_start,
                                  period_end=period_end, usage_end=usage_end,
                                  quantity=line.quantity, cost=line.amount, invoice=invoice,
                                  actor=actor, ledger=ledger)
        for line in lines
    }
