"""Writes for plans, pricing rules, invoices and credit notes (API.md §6)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.apps import apps
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing_project.decimals import normalize
from billing_project.errors import Conflict, InvalidInput
from invoicing import pricing, selectors, settlement
from invoicing.models import (
    CreditNote,
    Invoice,
    InvoiceLineItem,
    InvoiceNumberSequence,
    Plan,
    PricingRule,
)
from ledgers.audit import actor_label, record_action
from ledgers.models import Customer


def normalize_currency(currency: str) -> str:
    """Three-letter codes are ISO 4217 (upper case); longer names are custom units as given."""
    currency = (currency or "").strip()
    if not currency:
        raise InvalidInput("currency must not be blank.", code="invalid_currency",
                           field="currency")
    return currency.upper() if len(currency) == 3 else currency


def _pricing_error(exc: pricing.PricingError) -> InvalidInput:
    return InvalidInput(exc.message, code=exc.code, field=exc.field)


# --------------------------------------------------------------------------------------------
# Plans
# --------------------------------------------------------------------------------------------


def _plan_snapshot(plan: Plan) -> dict:
    return {"key": plan.key, "name": plan.name, "currency": plan.currency,
            "billing_interval": plan.billing_interval}


@transaction.atomic
def plan_create(*, actor, key: str, name: str, currency: str,
                billing_interval: str = "month") -> Plan:
    if billing_interval not in ("day", "week", "month", "year"):
        raise InvalidInput("billing_interval must be one of day, week, month, year.",
                           code="invalid_billing_interval", field="billing_interval")
    plan = Plan(key=key, name=name, currency=normalize_currency(currency),
                billing_interval=billing_interval)
    try:
        with transaction.atomic():
            plan.save(force_insert=True)
    except IntegrityError as exc:
        if "plan_key_unique" in str(exc):
            existing = Plan.objects.filter(key=key).first()
            raise Conflict(f"A plan with key '{key}' already exists.", code="duplicate_plan_key",
                           field="key",
                           extra={"conflicting_id": existing.pk if existing else None}) from None
        raise
    record_action(actor=actor, action="plan.create", target=plan,
                  data={"after": _plan_snapshot(plan)})
    return plan


@transaction.atomic
def plan_update(*, actor, plan: Plan, name: str, reason: str = "") -> Plan:
    """Only the name changes: key, currency and interval are fixed once customers use a plan."""
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    before = _plan_snapshot(plan)
    plan.name = name
    plan.save(update_fields=["name"])
    record_action(actor=actor, action="plan.update", target=plan, reason=reason,
                  data={"before": before, "after": _plan_snapshot(plan)})
    return plan


# --------------------------------------------------------------------------------------------
# Pricing rules
# --------------------------------------------------------------------------------------------


def meter_model():
    try:
        return apps.get_model("metering", "Meter")
    except LookupError:
        return None


def meter_resolve(*, meter_id: str | None = None, meter_slug: str | None = None):
    """The metering app's Meter by id or slug; InvalidInput(unknown_meter) otherwise."""
    model = meter_model()
    field = "meter_id" if meter_id is not None else "meter_slug"
    value = meter_id if meter_id is not None else meter_slug
    meter = None
    if model is not None and value:
        queryset = model.objects.filter(archived_at__isnull=True)
        meter = (queryset.filter(pk=meter_id) if meter_id is not None
                 else queryset.filter(slug=meter_slug)).first()
    if meter is None:
        raise InvalidInput(f"No meter '{value}'.", code="unknown_meter", field=field)
    return meter


def tiers_for_storage(tiers) -> list[dict]:
    return [{"up_to": None if t.up_to is None else str(normalize(t.up_to)),
             "unit_amount": str(normalize(t.unit_amount)),
             "flat_amount": str(normalize(t.flat_amount))}
            for t in pricing.normalize_tiers(tiers)]


def _rule_snapshot(rule: PricingRule) -> dict:
    return {"name": rule.name, "meter_id": rule.meter_id, "meter_slug": rule.meter_slug,
            "plan_id": rule.plan_id, "currency": rule.currency, "model": rule.model,
            "unit_amount": None if rule.unit_amount is None else str(rule.unit_amount),
            "tiers": rule.tiers, "package_size": rule.package_size, "filters": rule.filters,
            "archived_at": rule.archived_at.isoformat() if rule.archived_at else None}


def pricing_rule_validate(*, model: str, unit_amount=None, tiers=None, package_size=None,
                          filters: dict | None = None, meter=None) -> None:
    """Raise InvalidInput for a rule that cannot price usage (pricing.validate_rule's codes)."""
    try:
        pricing.validate_rule(model, unit_amount=unit_amount, tiers=tiers,
                              package_size=package_size)
    except pricing.PricingError as exc:
        raise _pricing_error(exc) from None
    if filters and meter is not None:
        group_by = getattr(meter, "group_by", None) or {}
        unknown = sorted(set(filters) - set(group_by))
        if unknown:
            raise InvalidInput(
                f"filters use keys the meter does not group by: {', '.join(unknown)} "
                f"(meter group_by: {', '.join(sorted(group_by)) or 'none'}).",
                code="unknown_group_by", field="filters")


@transaction.atomic
def pricing_rule_create(*, actor, name: str, currency: str, model: str,
                        meter_id: str | None = None, meter_slug: str | None = None,
                        plan_id: str | None = None, unit_amount: Decimal | None = None,
                        tiers: list | None = None, package_size=None,
                        filters: dict | None = None) -> PricingRule:
    if (meter_id is None) == (meter_slug is None):
        raise InvalidInput("Give exactly one of meter_id or meter_slug.",
                           code="meter_required", field="meter_id")
    meter = meter_resolve(meter_id=meter_id, meter_slug=meter_slug)
    currency = normalize_currency(currency)
    plan = None
    if plan_id is not None:
        plan = Plan.objects.filter(pk=plan_id).first()
        if plan is None:
            raise InvalidInput(f"No plan '{plan_id}'.", code="unknown_plan", field="plan_id")
        if plan.currency != currency:
            raise InvalidInput(
                f"The rule's currency {currency} differs from the plan's {plan.currency}.",
                code="currency_mismatch", field="currency")
    filters = filters or {}
    pricing_rule_validate(model=model, unit_amount=unit_amount, tiers=tiers,
                          package_size=package_size, filters=filters, meter=meter)
    rule = PricingRule(
        name=name, meter_id=meter.pk, meter_slug=meter.slug, plan=plan, currency=currency,
        model=model, unit_amount=unit_amount,
        tiers=tiers_for_storage(tiers) if model in ("graduated", "volume") else None,
        package_size=int(package_size) if model == "package" else None,
        filters={str(k): str(v) for k, v in filters.items()},
    )
    rule.save(force_insert=True)
    record_action(actor=actor, action="pricing_rule.create", target=rule,
                  data={"after": _rule_snapshot(rule)})
    return rule


PRICING_FIELDS = ("model", "unit_amount", "tiers", "package_size", "filters")


def pricing_rule_in_use(rule: PricingRule) -> bool:
    """Whether an issued (or paid, or voided) invoice priced usage with the rule."""
    return rule.line_items.exclude(invoice__status="draft").exists()


@transaction.atomic
def pricing_rule_update(*, actor, rule: PricingRule, reason: str = "", **changes
                        ) -> PricingRule:
    """Rename a rule, or change its pricing while no issued invoice uses it (afterwards:
    archive it and create a new one). Meter, plan and currency never change."""
    unknown = set(changes) - {"name", *PRICING_FIELDS}
    if unknown:
        raise InvalidInput(f"Cannot update {', '.join(sorted(unknown))}.",
                           code="not_updatable")
    rule = PricingRule.objects.select_for_update().get(pk=rule.pk)
    if rule.archived_at is not None:
        raise Conflict("Archived pricing rules cannot be changed.",
                       code="pricing_rule_archived")
    pricing_changes = {k: v for k, v in changes.items() if k in PRICING_FIELDS}
    if pricing_changes and pricing_rule_in_use(rule):
        raise Conflict("An issued invoice uses this rule: archive it and create a new one.",
                       code="pricing_rule_in_use")
    before = _rule_snapshot(rule)
    values = {"model": rule.model, "unit_amount": rule.unit_amount, "tiers": rule.tiers,
              "package_size": rule.package_size, "filters": rule.filters, **pricing_changes}
    model = values["model"]
    if model in ("per_unit", "package"):
        values["tiers"] = None
    else:
        values["unit_amount"] = None
    if model != "package":
        values["package_size"] = None
    pricing_rule_validate(model=model, unit_amount=values["unit_amount"],
                          tiers=values["tiers"], package_size=values["package_size"],
                          filters=values["filters"], meter=meter_resolve(meter_id=rule.meter_id))
    rule.name = changes.get("name", rule.name)
    rule.model = model
    rule.unit_amount = values["unit_amount"]
    rule.tiers = tiers_for_storage(values["tiers"]) if values["tiers"] else None
    rule.package_size = int(values["package_size"]) if values["package_size"] else None
    rule.filters = {str(k): str(v) for k, v in (values["filters"] or {}).items()}
    rule.save()
    record_action(actor=actor, action="pricing_rule.update", target=rule, reason=reason,
                  data={"before": before, "after": _rule_snapshot(rule)})
    return rule


@transaction.atomic
def pricing_rule_archive(*, actor, rule: PricingRule, reason: str = "",
                         at: datetime | None = None) -> PricingRule:
    """Archived rules price no new period; invoices that used them keep them (PROTECT)."""
    rule = PricingRule.objects.select_for_update().get(pk=rule.pk)
    if rule.archived_at is not None:
        return rule
    before = _rule_snapshot(rule)
    rule.archived_at = at or timezone.now()
    rule.save(update_fields=["archived_at"])
    record_action(actor=actor, action="pricing_rule.archive", target=rule, reason=reason,
                  data={"before": before, "after": _rule_snapshot(rule)})
    return rule



# --------------------------------------------------------------------------------------------
# Invoices
# --------------------------------------------------------------------------------------------

ZERO = Decimal(0)


def _invoice_snapshot(invoice: Invoice) -> dict:
    def ts(value):
        return value.isoformat() if value else None

    return {"status": invoice.status, "invoice_number": invoice.invoice_number,
            "subtotal": str(invoice.subtotal), "credits_applied": str(invoice.credits_applied),
            "amount_due": str(invoice.amount_due), "amount_paid": str(invoice.amount_paid),
            "amount_refunded": str(invoice.amount_refunded), "issued_at": ts(invoice.issued_at),
            "paid_at": ts(invoice.paid_at), "voided_at": ts(invoice.voided_at)}


def _lock_invoice(invoice: Invoice) -> Invoice:
    return Invoice.objects.select_for_update(of=("self",)).select_related("customer").get(
        pk=invoice.pk)


def _next_invoice_number() -> str:
    """Gap-free: the counter row is incremented (and so locked) in the issuing transaction;
    a rollback returns the number. Keep the rest of that transaction short after this."""
    table = InvoiceNumberSequence._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET last_value = last_value + 1 WHERE name = %s "
                       "RETURNING last_value", ["invoice"])
        row = cursor.fetchone()
        if row is None:
            cursor.execute(f"INSERT INTO {table} (name, last_value) VALUES (%s, 1) "
                           "ON CONFLICT (name) DO UPDATE SET last_value = "
                           f"{table}.last_value + 1 RETURNING last_value", ["invoice"])
            row = cursor.fetchone()
    return f"INV-{row[0]:06d}"


def _write_lines(invoice: Invoice, draft, checkpoints: dict, *, fresh: bool = False) -> None:
    """Replace the draft's line items with ``draft``'s, credits from the checkpoints."""
    if not fresh:
        invoice.line_items.all().delete()
    items = []
    for position, line in enumerate(draft.lines):
        checkpoint = checkpoints.get(line.rule.id)
        credits = min(checkpoint.paid, line.amount) if checkpoint else ZERO
        line.credits_applied = credits
        items.append(InvoiceLineItem(
            invoice=invoice, position=position, pricing_rule=line.rule, name=line.rule.name,
            meter_id=line.rule.meter_id, meter_slug=line.rule.meter_slug, model=line.rule.model,
            unit_amount=line.rule.unit_amount, quantity=line.quantity, amount=line.amount,
            unrounded_amount=line.result.unrounded, tiers=line.tiers_json(),
            credits_applied=credits))
    InvoiceLineItem.objects.bulk_create(items)
    invoice.subtotal = draft.subtotal
    invoice.credits_applied = draft.credits_applied
    invoice.total = invoice.amount_due = invoice.subtotal - invoice.credits_applied


def _price_and_settle(invoice: Invoice, *, actor, cache=None, fresh: bool = False) -> None:
    """Price the invoice's period from metering and pay what credits can (under the ledger
    lock); the draft's lines and totals follow."""
    customer = invoice.customer
    draft = selectors.invoice_draft_compute(customer=customer, plan=invoice.plan,
                                            start=invoice.period_start, end=invoice.period_end,
                                            cache=cache)
    checkpoints = settlement.settle_lines(
        customer=customer, currency=invoice.currency, period_start=invoice.period_start,
        period_end=invoice.period_end, usage_end=invoice.period_end, lines=draft.lines,
        invoice=invoice, actor=actor)
    if not checkpoints:
        checkpoints = settlement.last_checkpoints(customer=customer,
                                                  period_start=invoice.period_start)
    _write_lines(invoice, draft, checkpoints, fresh=fresh)


@transaction.atomic
def invoice_create_for_period(*, customer: Customer, period_start: datetime,
                              period_end: datetime, actor="system:close_billing_periods",
                              plan: Plan | None = None,
                              cache: selectors.PricingCache | None = None,
                              ) -> tuple[Invoice, bool]:
    """The draft invoice of a finished period, created at most once per (customer, period).
    Returns (invoice, created)."""
    plan = plan or selectors.customer_plan(customer=customer)
    lookup = {"customer": customer, "kind": "usage", "period_start": period_start,
              "period_end": period_end}
    existing = Invoice.objects.filter(**lookup).first()
    if existing is not None:
        return existing, False
    invoice = Invoice(customer=customer, plan=plan, currency=plan.currency, kind="usage",
                      period_start=period_start, period_end=period_end)
    try:
        with transaction.atomic():
            invoice.save(force_insert=True)
    except IntegrityError as exc:
        if "invoice_one_per_customer_period" in str(exc):
            return Invoice.objects.get(**lookup), False
        raise
    _price_and_settle(invoice, actor=actor, cache=cache, fresh=True)
    invoice.save()
    record_action(actor=actor, action="invoice.create", target=invoice,
                  data={"after": _invoice_snapshot(invoice)})
    return invoice, True


def _reserve_invoice_numbers(count: int) -> list[str]:
    """``count`` consecutive numbers in one statement (same lock as `_next_invoice_number`)."""
    table = InvoiceNumberSequence._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} (name, last_value) VALUES (%s, %s) "
                       "ON CONFLICT (name) DO UPDATE SET last_value = "
                       f"{table}.last_value + EXCLUDED.last_value RETURNING last_value",
                       ["invoice", count])
        last = cursor.fetchone()[0]
    return [f"INV-{n:06d}" for n in range(last - count + 1, last + 1)]


@transaction.atomic
def invoices_close_bulk(*, items, as_of: datetime, grace: timedelta | None,
                        cache: selectors.PricingCache, actor="system:close_billing_periods",
                        ) -> tuple[int, int]:
    """Create (and, past the grace period, issue) the period invoices of many customers
    without credit ledgers in one transaction: the same invoices as
    `invoice_create_for_period` + `invoice_issue`, written in bulk. ``items`` are
    (customer, plan, period_start, period_end). An invoice that already exists (another run)
    is skipped by the unique constraint. Returns (created, issued)."""
    candidates: list[Invoice] = []
    drafts = {}
    for customer, plan, start, end in items:
        draft = selectors.invoice_draft_compute(customer=customer, plan=plan, start=start,
                                                end=end, cache=cache)
        invoice = Invoice(customer=customer, plan=plan, currency=plan.currency, kind="usage",
                          period_start=start, period_end=end, subtotal=draft.subtotal,
                          credits_applied=ZERO, total=draft.subtotal,
                          amount_due=draft.subtotal)
        candidates.append(invoice)
        drafts[invoice.pk] = draft
    if not candidates:
        return 0, 0
    Invoice.objects.bulk_create(candidates, ignore_conflicts=True)
    inserted = set(Invoice.objects.filter(pk__in=[i.pk for i in candidates])
                   .values_list("pk", flat=True))
    created = [invoice for invoice in candidates if invoice.pk in inserted]
    InvoiceLineItem.objects.bulk_create([
        InvoiceLineItem(
            invoice=invoice, position=position, pricing_rule=line.rule, name=line.rule.name,
            meter_id=line.rule.meter_id, meter_slug=line.rule.meter_slug, model=line.rule.model,
            unit_amount=line.rule.unit_amount, quantity=line.quantity, amount=line.amount,
            unrounded_amount=line.result.unrounded, tiers=line.tiers_json())
        for invoice in created for position, line in enumerate(drafts[invoice.pk].lines)])
    due = sorted((i for i in created if i.period_end + (grace or timedelta(0)) <= as_of),
                 key=lambda i: (i.period_end, i.customer_id))
    if due:
        for invoice, number in zip(due, _reserve_invoice_numbers(len(due)), strict=True):
            invoice.invoice_number = number
            invoice.status = "issued" if invoice.amount_due > 0 else "paid"
            invoice.issued_at = as_of
            invoice.due_date = as_of + timedelta(days=invoice.net_terms)
            invoice.paid_at = as_of if invoice.status == "paid" else None
        Invoice.objects.bulk_update(due, ["invoice_number", "status", "issued_at",
                                          "due_date", "paid_at"])
    for invoice in created:
        issued = invoice.status != "draft"
        record_action(actor=actor, action="invoice.issue" if issued else "invoice.create",
                      target=invoice, data={"created": True,
                                            "after": _invoice_snapshot(invoice)})
    return len(created), len(due)


@transaction.atomic
def invoices_issue_bulk(*, invoice_ids: list[str], as_of: datetime,
                        cache: selectors.PricingCache,
                        actor="system:close_billing_periods") -> int:
    """Issue many usage drafts of customers without credit ledgers in one transaction: the
    same result as `invoice_issue` for each (final pricing, next numbers), written in bulk.
    Drafts locked by another run are skipped. Returns how many were issued."""
    invoices = list(Invoice.objects.select_for_update(skip_locked=True, of=("self",))
                    .select_related("customer", "plan")
                    .filter(pk__in=invoice_ids, status="draft", kind="usage")
                    .order_by("period_end", "id"))
    if not invoices:
        return 0
    befores = {invoice.pk: _invoice_snapshot(invoice) for invoice in invoices}
    groups: dict[tuple, list[Invoice]] = {}
    for invoice in invoices:
        groups.setdefault((invoice.plan_id, invoice.period_start, invoice.period_end),
                          []).append(invoice)
    for group in groups.values():
        if len(group) >= BULK_PREFETCH_MIN:
            cache.prefetch_usage(plan=group[0].plan, start=group[0].period_start,
                                 end=group[0].period_end)
    drafts = {invoice.pk: selectors.invoice_draft_compute(
        customer=invoice.customer, plan=invoice.plan, start=invoice.period_start,
        end=invoice.period_end, cache=cache) for invoice in invoices}
    InvoiceLineItem.objects.filter(invoice__in=invoices).delete()
    InvoiceLineItem.objects.bulk_create([
        InvoiceLineItem(
            invoice=invoice, position=position, pricing_rule=line.rule, name=line.rule.name,
            meter_id=line.rule.meter_id, meter_slug=line.rule.meter_slug, model=line.rule.model,
            unit_amount=line.rule.unit_amount, quantity=line.quantity, amount=line.amount,
            unrounded_amount=line.result.unrounded, tiers=line.tiers_json())
        for invoice in invoices for position, line in enumerate(drafts[invoice.pk].lines)])
    for invoice, number in zip(invoices, _reserve_invoice_numbers(len(invoices)), strict=True):
        draft = drafts[invoice.pk]
        invoice.subtotal = invoice.total = invoice.amount_due = draft.subtotal
        invoice.credits_applied = ZERO
        invoice.invoice_number = number
        invoice.status = "issued" if invoice.amount_due > 0 else "paid"
        invoice.issued_at = as_of
        invoice.due_date = as_of + timedelta(days=invoice.net_terms)
        invoice.paid_at = as_of if invoice.status == "paid" else None
    Invoice.objects.bulk_update(invoices, ["subtotal", "credits_applied", "total", "amount_due",
                                           "invoice_number", "status", "issued_at", "due_date",
                                           "paid_at"])
    for invoice in invoices:
        record_action(actor=actor, action="invoice.issue", target=invoice,
                      data={"before": befores[invoice.pk], "after": _invoice_snapshot(invoice)})
    return len(invoices)


BULK_PREFETCH_MIN = 20


@transaction.atomic
def invoice_issue(*, invoice: Invoice, actor, at: datetime | None = None, reason: str = "",
                  reprice: bool = True, cache: selectors.PricingCache | None = None) -> Invoice:
    """Draft -> issued: the final pricing (usage that arrived within the grace period) and
    credits, then the next invoice number. ``reprice=False`` only for a draft priced in the
    same transaction."""
    invoice = _lock_invoice(invoice)
    if invoice.status != "draft":
        raise Conflict(f"Invoice '{invoice.pk}' is {invoice.status}; only drafts can be issued.",
                       code="invoice_not_draft")
    before = _invoice_snapshot(invoice)
    at = at or timezone.now()
    if invoice.kind == "usage" and reprice:
        _price_and_settle(invoice, actor=actor, cache=cache)
    invoice.status = "issued"
    invoice.issued_at = at
    invoice.due_date = at + timedelta(days=invoice.net_terms)
    invoice.invoice_number = _next_invoice_number()
    if invoice.amount_due == 0:  # nothing to collect
        invoice.status = "paid"
        invoice.paid_at = at
    invoice.save()
    record_action(actor=actor, action="invoice.issue", target=invoice, reason=reason,
                  data={"before": before, "after": _invoice_snapshot(invoice)})
    if invoice.status == "paid":
        _on_paid(invoice, actor=actor)
    return invoice


@transaction.atomic
def invoice_mark_paid(*, invoice: Invoice, actor, payment_received_date: datetime | None = None,
                      external_id: str | None = None, notes: str | None = None,
                      reason: str = "") -> Invoice:
    invoice = _lock_invoice(invoice)
    if invoice.status != "issued":
        raise Conflict(f"Invoice '{invoice.pk}' is {invoice.status}; only issued invoices can "
                       "be marked paid.", code="invoice_not_issued")
    before = _invoice_snapshot(invoice)
    invoice.status = "paid"
    invoice.paid_at = payment_received_date or timezone.now()
    invoice.amount_paid = invoice.total
    invoice.payment_external_id = external_id or ""
    invoice.payment_notes = notes or ""
    invoice.save()
    record_action(actor=actor, action="invoice.mark_paid", target=invoice, reason=reason,
                  data={"before": before, "after": _invoice_snapshot(invoice),
                        "external_id": external_id, "notes": notes})
    _on_paid(invoice, actor=actor)
    return invoice


def _on_paid(invoice: Invoice, *, actor) -> None:
    if invoice.kind == "credit_purchase" and invoice.credit_block_id:
        block_activate(block_id=invoice.credit_block_id, actor=actor)


@transaction.atomic
def invoice_void(*, invoice: Invoice, actor, reason: str = "") -> Invoice:
    """Void (cannot be undone): the credits the invoice consumed go back to their blocks
    with amendment entries."""
    invoice = _lock_invoice(invoice)
    if invoice.status == "void":
        raise Conflict(f"Invoice '{invoice.pk}' is already void.", code="invoice_already_void")
    before = _invoice_snapshot(invoice)
    returned, entries = ZERO, []
    if invoice.kind == "usage" and invoice.credits_applied > 0:
        rules = [item.pricing_rule for item in invoice.line_items.select_related("pricing_rule")
                 if item.pricing_rule_id and item.credits_applied > 0]
        returned, entries = settlement.return_credits(
            customer=invoice.customer, rules=rules, period_start=invoice.period_start,
            amount=None, actor=actor, reason=reason or f"void {invoice.pk}")
    invoice.status = "void"
    invoice.voided_at = timezone.now()
    invoice.save()
    record_action(actor=actor, action="invoice.void", target=invoice, reason=reason,
                  data={"before": before, "after": _invoice_snapshot(invoice),
                        "credits_returned": str(returned), "amendment_entries": entries})
    return invoice


@transaction.atomic
def invoice_refund(*, invoice: Invoice, actor, reason: str,
                   amount: Decimal | None = None) -> CreditNote:
    """A credit note for (part of) what was paid; refunds never exceed the amount paid."""
    invoice = _lock_invoice(invoice)
    if invoice.status != "paid":
        raise Conflict(f"Invoice '{invoice.pk}' is {invoice.status}; only paid invoices can be "
                       "refunded.", code="invoice_not_paid")
    if not (reason or "").strip():
        raise InvalidInput("A reason is required.", code="reason_required", field="reason")
    refundable = invoice.amount_paid - invoice.amount_refunded
    if amount is None:
        amount = refundable
    if amount <= 0:
        if refundable <= 0:
            raise Conflict("Nothing left to refund.", code="nothing_to_refund")
        raise InvalidInput("amount must be greater than 0.", code="invalid_amount",
                           field="amount")
    if amount != pricing.round_money(amount, invoice.currency):
        raise InvalidInput(f"amount has more decimals than {invoice.currency} allows.",
                           code="invalid_amount", field="amount")
    if amount > refundable:
        raise InvalidInput(f"amount exceeds what can still be refunded ({refundable}).",
                           code="refund_exceeds_paid", field="amount",
                           extra={"refundable": str(refundable)})
    before = _invoice_snapshot(invoice)
    note = CreditNote.objects.create(invoice=invoice, amount=amount, reason=reason.strip(),
                                     actor=actor_label(actor))
    invoice.amount_refunded += amount
    invoice.save(update_fields=["amount_refunded"])
    record_action(actor=actor, action="invoice.refund", target=invoice, reason=reason,
                  data={"before": before, "after": _invoice_snapshot(invoice),
                        "credit_note": note.pk, "amount": str(amount)})
    return note


# --------------------------------------------------------------------------------------------
# Credit purchases (API.md §4 increment with invoice_settings)
# --------------------------------------------------------------------------------------------


def credit_purchase_currency(*, customer: Customer, block_currency: str) -> str:
    """ISO blocks are bought in their own currency; custom units in the customer's (or USD)."""
    if pricing.minor_unit_exponent(block_currency) != pricing.CUSTOM_UNIT_EXPONENT:
        return block_currency
    return customer.currency or "USD"


@transaction.atomic
def credit_purchase_invoice_create(*, customer: Customer, block_id: str, amount: Decimal,
                                   per_unit_cost_basis: Decimal, block_currency: str,
                                   invoice_settings: dict | None, actor) -> Invoice:
    """The one-off invoice for credits bought with ``invoice_settings``: issued at once for
    amount x cost basis. Paying it activates the block (see `block_activate`)."""
    settings_ = invoice_settings or {}
    currency = credit_purchase_currency(customer=customer, block_currency=block_currency)
    unrounded = amount * per_unit_cost_basis
    total = pricing.round_money(unrounded, currency)
    net_terms = settings_.get("net_terms") or 0
    invoice = Invoice.objects.create(
        customer=customer, kind="credit_purchase", currency=currency, subtotal=total,
        total=total, amount_due=total, memo=settings_.get("memo") or "",
        net_terms=int(net_terms), credit_block_id=block_id)
    InvoiceLineItem.objects.create(
        invoice=invoice, position=0, name=f"Credits ({block_currency})", model="per_unit",
        unit_amount=per_unit_cost_basis, quantity=amount, amount=total,
        unrounded_amount=unrounded)
    record_action(actor=actor, action="invoice.create", target=invoice,
                  data={"after": _invoice_snapshot(invoice), "credit_block": block_id})
    return invoice_issue(invoice=invoice, actor=actor)


def block_activate(*, block_id: str, actor) -> None:
    """Activate a block bought through an invoice once the invoice is paid."""
    from grants import services as grants_services

    grants_services.credit_block_activate(block_id=block_id, actor=actor,
                                          reason="purchase invoice paid")


@transaction.atomic
def credit_purchase_refund(*, block_id: str, credits: Decimal, actor,
                           reason: str = "refund") -> CreditNote | None:
    """A credit note for credits voided with ``void_reason=refund`` on a block bought through
    an invoice: credits x cost basis, never more than what is still refundable. None when the
    block was not bought through a paid invoice."""
    invoice = (Invoice.objects.select_for_update()
               .filter(kind="credit_purchase", credit_block_id=block_id, status="paid").first())
    if invoice is None:
        return None
    item = invoice.line_items.first()
    cost_basis = item.unit_amount if item is not None and item.unit_amount else ZERO
    refundable = invoice.amount_paid - invoice.amount_refunded
    amount = min(pricing.round_money(credits * cost_basis, invoice.currency), refundable)
    if amount <= 0:
        return None
    return invoice_refund(invoice=invoice, actor=actor, amount=amount, reason=reason)
