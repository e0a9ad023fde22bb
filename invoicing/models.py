"""Plans, pricing rules, invoices, line items and credit notes (API.md §6)."""

import secrets

from django.db import models
from django.db.models import F, Q
from django.utils import timezone as tz

from billing_project.ids import id_factory

AMOUNT = {"max_digits": 30, "decimal_places": 12}

BILLING_INTERVALS = ("day", "week", "month", "year")
PRICING_MODELS = ("per_unit", "graduated", "volume", "package")


def new_hosted_token() -> str:
    return secrets.token_urlsafe(24)


class Plan(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=id_factory("plan"),
                          editable=False)
    key = models.CharField(max_length=100)
    name = models.CharField(max_length=255)
    currency = models.CharField(max_length=32)
    billing_interval = models.CharField(
        max_length=8, choices=[(i, i) for i in BILLING_INTERVALS], default="month")
    created_at = models.DateTimeField(default=tz.now, editable=False)

    class Meta:
        indexes = [models.Index(fields=["created_at", "id"], name="plan_created_idx")]
        constraints = [
            models.UniqueConstraint(fields=["key"], name="plan_key_unique"),
            models.CheckConstraint(condition=Q(billing_interval__in=BILLING_INTERVALS),
                                   name="plan_billing_interval_valid"),
            models.CheckConstraint(condition=~Q(currency=""), name="plan_currency_not_blank"),
        ]

    def __str__(self):
        return f"{self.name} ({self.key}, {self.currency}/{self.billing_interval})"


class PricingRule(models.Model):
    """How one meter's usage is priced. Archived rules keep pricing the invoices that use them."""

    id = models.CharField(primary_key=True, max_length=40, default=id_factory("price"),
                          editable=False)
    name = models.CharField(max_length=255)
    # The metering app's Meter (validated by the service; kept as ids so that archived or
    # renamed meters never break an issued invoice).
    meter_id = models.CharField(max_length=40, db_index=True)
    meter_slug = models.CharField(max_length=100)
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.PROTECT,
                             related_name="pricing_rules")
    currency = models.CharField(max_length=32)
    model = models.CharField(max_length=16, choices=[(m, m) for m in PRICING_MODELS])
    unit_amount = models.DecimalField(null=True, blank=True, **AMOUNT)
    # [{"up_to": "100" | null, "unit_amount": "0.10", "flat_amount": "0"}] as decimal strings.
    tiers = models.JSONField(null=True, blank=True)
    package_size = models.PositiveIntegerField(null=True, blank=True)
    # {group_by key: value}: only usage whose group-by values match is priced by this rule.
    filters = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=tz.now, editable=False)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("archive_pricingrule", "Can archive pricing rules")]
        indexes = [
            models.Index(fields=["created_at", "id"], name="pricingrule_created_idx"),
            models.Index(fields=["plan", "archived_at"], name="pricingrule_plan_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(model__in=PRICING_MODELS),
                                   name="pricingrule_model_valid"),
            models.CheckConstraint(condition=Q(unit_amount__isnull=True) | Q(unit_amount__gte=0),
                                   name="pricingrule_unit_amount_not_negative"),
            models.CheckConstraint(
                condition=(Q(model__in=("per_unit", "package"), unit_amount__isnull=False,
                             tiers__isnull=True)
                           | Q(model__in=("graduated", "volume"), unit_amount__isnull=True,
                               tiers__isnull=False)),
                name="pricingrule_parameters_match_model"),
            models.CheckConstraint(
                condition=(Q(model="package", package_size__gte=1)
                           | (~Q(model="package") & Q(package_size__isnull=True))),
                name="pricingrule_package_size_valid"),
            models.CheckConstraint(condition=~Q(currency=""),
                                   name="pricingrule_currency_not_blank"),
        ]

    def __str__(self):
        return f"{self.name} ({self.model}, {self.meter_slug}, {self.currency})"


INVOICE_STATUSES = ("draft", "issued", "paid", "void")
INVOICE_KINDS = ("usage", "credit_purchase")


class Invoice(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=id_factory("inv"),
                          editable=False)
    # Assigned when the invoice is issued, from InvoiceNumberSequence (gap-free).
    invoice_number = models.CharField(max_length=32, null=True, blank=True)
    customer = models.ForeignKey("ledgers.Customer", on_delete=models.PROTECT,
                                 related_name="invoices")
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.PROTECT,
                             related_name="invoices")
    kind = models.CharField(max_length=16, choices=[(k, k) for k in INVOICE_KINDS],
                            default="usage")
    currency = models.CharField(max_length=32)
    status = models.CharField(max_length=8, choices=[(s, s) for s in INVOICE_STATUSES],
                              default="draft")
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)  # exclusive
    subtotal = models.DecimalField(default=0, **AMOUNT)
    credits_applied = models.DecimalField(default=0, **AMOUNT)
    total = models.DecimalField(default=0, **AMOUNT)
    amount_due = models.DecimalField(default=0, **AMOUNT)
    amount_paid = models.DecimalField(default=0, **AMOUNT)
    amount_refunded = models.DecimalField(default=0, **AMOUNT)
    memo = models.TextField(blank=True)
    net_terms = models.PositiveIntegerField(default=0)
    # Credit purchase invoices: the block that becomes active when this invoice is paid.
    credit_block_id = models.CharField(max_length=40, null=True, blank=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    due_date = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    payment_external_id = models.CharField(max_length=255, blank=True)
    payment_notes = models.TextField(blank=True)
    hosted_token = models.CharField(max_length=64, default=new_hosted_token, editable=False)
    created_at = models.DateTimeField(default=tz.now, editable=False)

    class Meta:
        permissions = [
            ("issue_invoice", "Can issue invoices"),
            ("mark_invoice_paid", "Can mark invoices paid"),
            ("void_invoice", "Can void invoices"),
            ("refund_invoice", "Can refund invoices"),
        ]
        indexes = [
            models.Index(fields=["created_at", "id"], name="invoice_created_idx"),
            models.Index(fields=["status", "period_end"], name="invoice_status_period_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["customer", "period_start", "period_end"],
                                    condition=Q(kind="usage"),
                                    name="invoice_one_per_customer_period"),
            models.UniqueConstraint(fields=["invoice_number"], name="invoice_number_unique"),
            models.UniqueConstraint(fields=["hosted_token"], name="invoice_hosted_token_unique"),
            models.CheckConstraint(condition=Q(status__in=INVOICE_STATUSES),
                                   name="invoice_status_valid"),
            models.CheckConstraint(condition=Q(kind__in=INVOICE_KINDS),
                                   name="invoice_kind_valid"),
            models.CheckConstraint(
                condition=Q(kind="credit_purchase")
                | Q(period_start__isnull=False, period_end__gt=F("period_start")),
                name="invoice_usage_period_valid"),
            models.CheckConstraint(
                condition=Q(subtotal__gte=0, credits_applied__gte=0,
                            credits_applied__lte=F("subtotal")),
                name="invoice_credits_within_subtotal"),
            models.CheckConstraint(
                condition=Q(amount_due=F("subtotal") - F("credits_applied"),
                            total=F("subtotal") - F("credits_applied")),
                name="invoice_totals_consistent"),
            models.CheckConstraint(
                condition=Q(amount_refunded__gte=0, amount_refunded__lte=F("amount_paid")),
                name="invoice_refunds_within_paid"),
            models.CheckConstraint(
                condition=Q(amount_paid__gte=0, amount_paid__lte=F("total")),
                name="invoice_paid_within_total"),
            models.CheckConstraint(
                condition=~Q(status__in=("issued", "paid"))
                | Q(invoice_number__isnull=False, issued_at__isnull=False),
                name="invoice_issued_has_number"),
            models.CheckConstraint(condition=~Q(status="paid") | Q(paid_at__isnull=False),
                                   name="invoice_paid_has_paid_at"),
            models.CheckConstraint(condition=~Q(status="void") | Q(voided_at__isnull=False),
                                   name="invoice_void_has_voided_at"),
        ]

    def __str__(self):
        return f"{self.invoice_number or self.id} ({self.status})"

    @property
    def hosted_path(self) -> str:
        return f"/invoices/{self.id}/hosted/{self.hosted_token}"


class InvoiceLineItem(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=id_factory("ili"),
                          editable=False)
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="line_items")
    position = models.PositiveIntegerField(default=0)
    pricing_rule = models.ForeignKey(PricingRule, null=True, blank=True,
                                     on_delete=models.PROTECT, related_name="line_items")
    name = models.CharField(max_length=255)
    meter_id = models.CharField(max_length=40, blank=True)
    meter_slug = models.CharField(max_length=100, blank=True)
    # Copy of the rule as priced (a rule never changes, but the line stands on its own).
    model = models.CharField(max_length=16, blank=True)
    unit_amount = models.DecimalField(null=True, blank=True, **AMOUNT)
    quantity = models.DecimalField(**AMOUNT)
    amount = models.DecimalField(**AMOUNT)
    unrounded_amount = models.DecimalField(max_digits=60, decimal_places=30)
    tiers = models.JSONField(default=list, blank=True)
    credits_applied = models.DecimalField(default=0, **AMOUNT)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0, quantity__gte=0),
                                   name="invoicelineitem_not_negative"),
            models.CheckConstraint(
                condition=Q(credits_applied__gte=0, credits_applied__lte=F("amount")),
                name="invoicelineitem_credits_within_amount"),
        ]

    def __str__(self):
        return f"{self.name}: {self.amount}"


class CreditNote(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=id_factory("cn"),
                          editable=False)
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    amount = models.DecimalField(**AMOUNT)
    reason = models.TextField()
    actor = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=tz.now, editable=False)

    class Meta:
        indexes = [models.Index(fields=["created_at", "id"], name="creditnote_created_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="creditnote_amount_positive"),
        ]

    def __str__(self):
        return f"{self.id} ({self.amount})"


class InvoiceNumberSequence(models.Model):
    """The lock target that makes invoice numbers gap-free: one row, incremented on issue."""

    name = models.CharField(primary_key=True, max_length=32)
    last_value = models.PositiveBigIntegerField(default=0)

    def __str__(self):
        return f"{self.name}: {self.last_value}"


class UsageSettlement(models.Model):
    """Priced usage of one rule in one billing period, paid from credits up to `usage_end`.

    Rows are cumulative checkpoints: `cost` is the period's priced usage (rounded) accounted
    up to `usage_end`, `paid` the part of it paid from credits so far; the ledger decrements
    written for this step (decrements, or amendments when usage went down) carry `price_id` =
    the rule and are listed in `entry_ids`. The events
    a step covers are the meter's events in [`usage_start`, `usage_end`).
    """

    id = models.CharField(primary_key=True, max_length=40, default=id_factory("stl"),
                          editable=False)
    customer = models.ForeignKey("ledgers.Customer", on_delete=models.PROTECT, related_name="+")
    pricing_rule = models.ForeignKey(PricingRule, on_delete=models.PROTECT,
                                     related_name="settlements")
    currency = models.CharField(max_length=32)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    usage_start = models.DateTimeField()
    usage_end = models.DateTimeField()
    step = models.PositiveIntegerField()
    quantity = models.DecimalField(**AMOUNT)
    cost = models.DecimalField(**AMOUNT)
    paid = models.DecimalField(**AMOUNT)
    step_paid = models.DecimalField(**AMOUNT)
    entry_ids = models.JSONField(default=list, blank=True)
    invoice = models.ForeignKey(Invoice, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="settlements")
    created_at = models.DateTimeField(default=tz.now, editable=False)

    class Meta:
        indexes = [models.Index(fields=["customer", "period_start", "pricing_rule"],
                                name="settlement_period_idx")]
        constraints = [
            models.UniqueConstraint(fields=["customer", "pricing_rule", "period_start", "step"],
                                    name="settlement_step_unique"),
            models.CheckConstraint(condition=Q(usage_end__gte=F("usage_start")),
                                   name="settlement_window_ordered"),
            models.CheckConstraint(
                condition=Q(paid__gte=0, cost__gte=F("paid")),
                name="settlement_paid_within_cost"),
        ]

    def __str__(self):
        return f"{self.customer_id} {self.pricing_rule_id} -> {self.usage_end}: {self.paid}"
