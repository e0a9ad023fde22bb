"""Credit blocks (Orb's credit blocks, the engine's grants) and automatic top-up rules."""

from django.db import models
from django.db.models import F, Q
from django.utils import timezone as tz

from billing_project.ids import id_factory
from ledgers.models import Customer, Ledger

AMOUNT = {"max_digits": 30, "decimal_places": 12}


class CreditBlock(models.Model):
    """An amount of credits in one ledger, burned in burn-down order.

    `balance` is what is left; it is changed only under the ledger's lock, together with the
    ledger entry that records the change. `status` is the stored lifecycle; `depleted`
    (an active block with nothing left) and expiry before the job ran are derived on read.
    """

    class Status(models.TextChoices):
        ACTIVE = "active"
        PENDING_PAYMENT = "pending_payment"
        EXPIRED = "expired"
        VOIDED = "voided"

    class Source(models.TextChoices):
        MANUAL = "manual"
        TOP_UP = "top_up"
        EXPIRATION_CHANGE = "expiration_change"

    id = models.CharField(primary_key=True, max_length=40, default=id_factory("cb"),
                          editable=False)
    ledger = models.ForeignKey(Ledger, on_delete=models.PROTECT, related_name="blocks")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="credit_blocks")
    currency = models.CharField(max_length=32)
    initial_amount = models.DecimalField(**AMOUNT)
    balance = models.DecimalField(**AMOUNT)
    debt_paid = models.DecimalField(default=0, **AMOUNT,
                                    help_text="paid towards the ledger's debt when it opened")
    per_unit_cost_basis = models.DecimalField(null=True, blank=True, **AMOUNT)
    priority = models.IntegerField(default=1)
    effective_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    filters = models.JSONField(default=list, blank=True)
    invoice_settings = models.JSONField(null=True, blank=True)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.MANUAL)
    source_block = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    top_up = models.ForeignKey("grants.TopUp", null=True, blank=True, on_delete=models.PROTECT,
                               related_name="blocks")
    description = models.TextField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=tz.now, editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["created_at", "id"], name="creditblock_created_idx"),
            models.Index(fields=["ledger", "status"], name="creditblock_ledger_status_idx"),
            models.Index(fields=["expires_at"], name="creditblock_open_expiry_idx",
                         condition=Q(status__in=["active", "pending_payment"])),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(balance__gte=0),
                                   name="creditblock_balance_non_negative"),
            models.CheckConstraint(condition=Q(initial_amount__gt=0),
                                   name="creditblock_initial_amount_positive"),
            models.CheckConstraint(condition=Q(balance__lte=F("initial_amount")),
                                   name="creditblock_balance_within_initial"),
            models.CheckConstraint(condition=Q(debt_paid__gte=0)
                                   & Q(debt_paid__lte=F("initial_amount")),
                                   name="creditblock_debt_paid_range"),
            models.CheckConstraint(condition=Q(per_unit_cost_basis__isnull=True)
                                   | Q(per_unit_cost_basis__gte=0),
                                   name="creditblock_cost_basis_non_negative"),
            models.CheckConstraint(condition=Q(expires_at__isnull=True)
                                   | Q(expires_at__gt=F("effective_at")),
                                   name="creditblock_expires_after_effective"),
            models.CheckConstraint(condition=Q(voided_at__isnull=True) | Q(status="voided"),
                                   name="creditblock_voided_at_only_when_voided"),
            models.CheckConstraint(condition=~Q(status__in=["expired", "voided"]) | Q(balance=0),
                                   name="creditblock_closed_blocks_empty"),
        ]

    def __str__(self):
        return f"{self.id} ({self.balance} {self.currency})"


class TopUp(models.Model):
    """Automatic top-up: when the balance falls below `threshold`, add `amount` once."""

    class ExpiresAfterUnit(models.TextChoices):
        DAY = "day"
        MONTH = "month"

    id = models.CharField(primary_key=True, max_length=40, default=id_factory("tu"),
                          editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="top_ups")
    currency = models.CharField(max_length=32)
    threshold = models.DecimalField(**AMOUNT)
    amount = models.DecimalField(**AMOUNT)
    per_unit_cost_basis = models.DecimalField(**AMOUNT)
    invoice_settings = models.JSONField(default=dict, blank=True)
    expires_after = models.PositiveIntegerField(null=True, blank=True)
    expires_after_unit = models.CharField(max_length=8, choices=ExpiresAfterUnit.choices,
                                          null=True, blank=True)
    active_from = models.DateTimeField(default=tz.now)
    armed = models.BooleanField(default=True,
                                help_text="false after a top-up until the balance is back "
                                          "at or above the threshold")
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=tz.now, editable=False)

    class Meta:
        indexes = [models.Index(fields=["created_at", "id"], name="topup_created_idx")]
        constraints = [
            models.UniqueConstraint(fields=["customer", "currency"],
                                    condition=Q(deleted_at__isnull=True),
                                    name="topup_one_active_per_currency"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="topup_amount_positive"),
            models.CheckConstraint(condition=Q(threshold__gte=0),
                                   name="topup_threshold_non_negative"),
            models.CheckConstraint(condition=Q(per_unit_cost_basis__gte=0),
                                   name="topup_cost_basis_non_negative"),
            models.CheckConstraint(
                condition=(Q(expires_after__isnull=True, expires_after_unit__isnull=True)
                           | Q(expires_after__gte=1, expires_after_unit__isnull=False)),
                name="topup_expiry_complete",
            ),
        ]

    def __str__(self):
        return f"{self.id} ({self.customer_id} {self.currency})"
