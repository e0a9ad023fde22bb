from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone as tz

from billing_project.ids import id_factory


class Customer(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=id_factory("cus"),
                          editable=False)
    external_customer_id = models.CharField(max_length=255, null=True, blank=True)
    name = models.CharField(max_length=255)
    email = models.EmailField(max_length=320)
    currency = models.CharField(max_length=32, null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    metadata = models.JSONField(default=dict, blank=True)
    allow_negative_balance = models.BooleanField(default=True)
    plan_id = models.CharField(max_length=40, null=True, blank=True)
    billing_anchor = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=tz.now, editable=False)

    class Meta:
        indexes = [models.Index(fields=["created_at", "id"], name="customer_created_idx")]
        constraints = [
            models.UniqueConstraint(fields=["external_customer_id"],
                                    name="customer_external_id_unique"),
            models.CheckConstraint(condition=~Q(external_customer_id=""),
                                   name="customer_external_id_not_blank"),
        ]

    def __str__(self):
        return f"{self.name} ({self.external_customer_id or self.id})"


class ApiKey(models.Model):
    """Only the SHA-256 of the key is stored; `prefix` identifies it in lists and logs."""

    id = models.CharField(primary_key=True, max_length=40, default=id_factory("key"),
                          editable=False)
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=tz.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"


class AuditLog(models.Model):
    """Who did what to which object, why, with before/after data. Append-only."""

    id = models.CharField(primary_key=True, max_length=40, default=id_factory("aud"),
                          editable=False)
    actor = models.CharField(max_length=255, help_text="user:<username>, api_key:<name>, system")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                             on_delete=models.PROTECT, related_name="+")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+")
    action = models.CharField(max_length=100)
    target_type = models.CharField(max_length=100)
    target_id = models.CharField(max_length=100)
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=tz.now, editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["target_type", "target_id"], name="audit_target_idx"),
            models.Index(fields=["created_at", "id"], name="audit_created_idx"),
        ]

    def __str__(self):
        return f"{self.actor} {self.action} {self.target_type}:{self.target_id}"


class IdempotencyRecord(models.Model):
    """A stored response for an `Idempotency-Key` (API.md §0); expired by a job after 24 h."""

    scope = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.BinaryField(null=True)
    response_content_type = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="idempotency_scope_key_unique")
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]

    def __str__(self):
        return f"{self.key} ({self.response_status})"


# --------------------------------------------------------------------------------------------
# Credit ledgers (API.md §4). Services live in grants/services.py; blocks in grants.models.
# --------------------------------------------------------------------------------------------

AMOUNT = {"max_digits": 30, "decimal_places": 12}


class Ledger(models.Model):
    """One credit ledger per (customer, currency): the lock target of every balance write.

    `balance` is the ending balance of the last entry: the open blocks' balances minus `debt`
    (usage no block covered, paid off first by the next block to become active). `pending`
    is the sum of open holds.
    """

    id = models.CharField(primary_key=True, max_length=40, default=id_factory("ldg"),
                          editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="ledgers")
    currency = models.CharField(max_length=32)
    last_sequence_number = models.BigIntegerField(default=0)
    balance = models.DecimalField(default=0, **AMOUNT)
    debt = models.DecimalField(default=0, **AMOUNT)
    pending = models.DecimalField(default=0, **AMOUNT)
    caught_up_at = models.DateTimeField(null=True, blank=True,
                                        help_text="expiries and activations settled up to here")
    created_at = models.DateTimeField(default=tz.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "currency"],
                                    name="ledger_customer_currency_unique"),
            models.CheckConstraint(condition=Q(debt__gte=0), name="ledger_debt_non_negative"),
            models.CheckConstraint(condition=Q(pending__gte=0),
                                   name="ledger_pending_non_negative"),
            models.CheckConstraint(condition=Q(last_sequence_number__gte=0),
                                   name="ledger_sequence_non_negative"),
            models.CheckConstraint(condition=~Q(currency=""), name="ledger_currency_not_blank"),
        ]

    def __str__(self):
        return f"{self.customer_id} {self.currency}"


class LedgerEntry(models.Model):
    """An immutable credit ledger entry (Orb's ledger entry). A trigger rejects UPDATE/DELETE."""

    class EntryType(models.TextChoices):
        INCREMENT = "increment"
        DECREMENT = "decrement"
        EXPIRATION_CHANGE = "expiration_change"
        CREDIT_BLOCK_EXPIRY = "credit_block_expiry"
        VOID = "void"
        VOID_INITIATED = "void_initiated"
        AMENDMENT = "amendment"

    class EntryStatus(models.TextChoices):
        COMMITTED = "committed"
        PENDING = "pending"

    id = models.CharField(primary_key=True, max_length=40, default=id_factory("le"),
                          editable=False)
    # No index of their own: (ledger, sequence_number) and (customer, created_at, id) lead
    # with them, and every decrement writes each index of this table (migration 0005).
    ledger = models.ForeignKey(Ledger, on_delete=models.PROTECT, related_name="entries",
                               db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="+",
                                 db_index=False)
    currency = models.CharField(max_length=32)
    sequence_number = models.BigIntegerField()
    entry_type = models.CharField(max_length=32, choices=EntryType.choices)
    entry_status = models.CharField(max_length=16, choices=EntryStatus.choices,
                                    default=EntryStatus.COMMITTED)
    amount = models.DecimalField(**AMOUNT)
    starting_balance = models.DecimalField(**AMOUNT)
    ending_balance = models.DecimalField(**AMOUNT)
    debt_after = models.DecimalField(default=0, **AMOUNT,
                                     help_text="the ledger's debt after this entry (internal)")
    credit_block = models.ForeignKey("grants.CreditBlock", null=True, blank=True,
                                     on_delete=models.PROTECT, related_name="entries")
    hold = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                             related_name="settled_by",
                             help_text="the pending decrement this entry commits")
    description = models.TextField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    event_id = models.CharField(max_length=255, null=True, blank=True)
    invoice_id = models.CharField(max_length=40, null=True, blank=True)
    price_id = models.CharField(max_length=255, null=True, blank=True)
    new_block_expiry_date = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=32, null=True, blank=True)
    void_amount = models.DecimalField(null=True, blank=True, **AMOUNT)
    actor = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=tz.now, editable=False)

    class Meta:
        verbose_name_plural = "ledger entries"
        indexes = [
            models.Index(fields=["created_at", "id"], name="ledgerentry_created_idx"),
            models.Index(fields=["customer", "created_at", "id"],
                         name="ledgerentry_customer_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["ledger", "sequence_number"],
                                    name="ledgerentry_sequence_unique"),
            models.CheckConstraint(condition=Q(sequence_number__gte=1),
                                   name="ledgerentry_sequence_positive"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="ledgerentry_amount_positive"),
            models.CheckConstraint(condition=Q(debt_after__gte=0),
                                   name="ledgerentry_debt_non_negative"),
            # The running balance moves by exactly the entry's amount, in its direction.
            models.CheckConstraint(
                condition=(
                    Q(entry_type__in=["increment", "amendment"],
                      ending_balance=models.F("starting_balance") + models.F("amount"))
                    | Q(entry_type__in=["decrement", "credit_block_expiry", "void"],
                        entry_status="committed",
                        ending_balance=models.F("starting_balance") - models.F("amount"))
                    | Q(entry_type__in=["expiration_change", "void_initiated"],
                        ending_balance=models.F("starting_balance"))
                    | Q(entry_type="decrement", entry_status="pending",
                        ending_balance=models.F("starting_balance"))
                ),
                name="ledgerentry_balance_arithmetic",
            ),
            models.CheckConstraint(
                condition=Q(entry_status="committed") | Q(entry_type="decrement"),
                name="ledgerentry_only_decrements_pending",
            ),
            models.CheckConstraint(
                condition=Q(credit_block__isnull=False) | Q(entry_type="decrement"),
                name="ledgerentry_block_required",
            ),
            models.UniqueConstraint(fields=["credit_block"],
                                    condition=Q(entry_type="credit_block_expiry"),
                                    name="ledgerentry_one_expiry_per_block"),
            models.UniqueConstraint(fields=["credit_block"],
                                    condition=Q(entry_type="increment"),
                                    name="ledgerentry_one_increment_per_block"),
        ]

    def __str__(self):
        return f"{self.ledger_id} #{self.sequence_number} {self.entry_type} {self.amount}"


class HoldSettlement(models.Model):
    """How a hold (a pending decrement) ended: committed or released. One per hold."""

    class Outcome(models.TextChoices):
        COMMITTED = "committed"
        RELEASED = "released"

    hold = models.OneToOneField(LedgerEntry, primary_key=True, on_delete=models.PROTECT,
                                related_name="settlement")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    actor = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=tz.now, editable=False)

    def __str__(self):
        return f"{self.hold_id} {self.outcome}"
