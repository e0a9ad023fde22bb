"""Events (current version + append-only history), meters, usage rollups and backfills."""

from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models import Q
from django.utils import timezone as tz
from psycopg.types.json import Jsonb

from billing_project.api import json_dumps, json_loads
from billing_project.ids import id_factory
from ledgers.models import Customer


class ExactJSONField(models.JSONField):
    """JSONB whose numbers stay exact: Decimal in, exact JSON number out, Decimal back."""

    def from_db_value(self, value, expression, connection):
        if value is None or not isinstance(value, (str, bytes)):
            return value
        return json_loads(value.encode() if isinstance(value, str) else value)

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None:
            return None
        return Jsonb(value, dumps=lambda v: json_dumps(v).decode())

    def validate(self, value, model_instance):
        models.Field.validate(self, value, model_instance)


class NumericField(models.Field):
    """PostgreSQL `numeric` without precision: sums of exact decimals never overflow or round."""

    def db_type(self, connection):
        return "numeric"


INGEST_SEQUENCE = "metering_event_ins_seq"


class Backfill(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        REFLECTED = "reflected"
        PENDING_REVERT = "pending_revert"
        REVERTED = "reverted"

    id = models.CharField(primary_key=True, max_length=40, default=id_factory("bf"),
                          editable=False)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="+")
    timeframe_start = models.DateTimeField()
    timeframe_end = models.DateTimeField()
    replace_existing_events = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=tz.now, editable=False)
    close_time = models.DateTimeField(null=True, blank=True)
    reverted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["created_at", "id"], name="backfill_created_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(timeframe_start__lt=models.F("timeframe_end")),
                                   name="backfill_timeframe_ordered"),
            models.CheckConstraint(condition=Q(status__in=["pending", "reflected",
                                                           "pending_revert", "reverted"]),
                                   name="backfill_status_valid"),
        ]

    def __str__(self):
        return f"{self.id} ({self.status})"


class Event(models.Model):
    """The current version of one event; `event_id` is its idempotency key (unique forever).

    `counted` says whether the event counts for usage now: not deprecated, not in an open or
    reverted backfill, not replaced by a closed backfill. Earlier versions are in EventVersion.
    """

    event_id = models.CharField(primary_key=True, max_length=256)
    # No database FK (a per-row FK check costs ~25% of ingestion): ingestion resolves every
    # customer_id in the same transaction, and customers are never deleted (PROTECT here).
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="+", db_index=False, db_constraint=False)
    external_customer_id = models.CharField(max_length=255, null=True, blank=True)
    event_name = models.CharField(max_length=255)
    timestamp = models.DateTimeField()
    properties = ExactJSONField(default=dict, blank=True)
    deprecated = models.BooleanField(default=False)
    counted = models.BooleanField(default=True)
    backfill = models.ForeignKey(Backfill, null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="events", db_index=False)
    replaced_by = models.ForeignKey(Backfill, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="replaced_events", db_index=False)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=tz.now, editable=False)
    amended_at = models.DateTimeField(null=True, blank=True)
    # Ingestion batch number (see rollups.py): events at or above the watermark are the tail.
    ins_seq = models.BigIntegerField(
        db_default=models.Func(models.Value(INGEST_SEQUENCE), function="nextval",
                               output_field=models.BigIntegerField()),
        editable=False)

    class Meta:
        indexes = [
            BrinIndex(fields=["ins_seq"], name="event_ins_seq_brin"),  # compaction, tail
            models.Index(fields=["customer", "ins_seq"], condition=Q(counted=True),
                         name="event_customer_tail_idx"),  # one customer's tail
            models.Index(fields=["customer", "event_name", "timestamp"],
                         condition=Q(counted=True), name="event_usage_idx"),
            BrinIndex(fields=["timestamp"], name="event_timestamp_brin"),  # cheap to maintain
            models.Index(fields=["external_customer_id"], condition=Q(customer__isnull=True),
                         name="event_unattributed_idx"),
            models.Index(fields=["backfill"], condition=Q(backfill__isnull=False),
                         name="event_backfill_idx"),
            models.Index(fields=["replaced_by"], condition=Q(replaced_by__isnull=False),
                         name="event_replaced_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(event_id=""), name="event_id_not_blank"),
            models.CheckConstraint(
                condition=Q(customer__isnull=False) | Q(external_customer_id__isnull=False),
                name="event_has_customer"),
            models.CheckConstraint(condition=~(Q(counted=True) & Q(deprecated=True)),
                                   name="event_deprecated_not_counted"),
            models.CheckConstraint(condition=Q(version__gte=1), name="event_version_positive"),
        ]

    def __str__(self):
        return self.event_id


class EventVersion(models.Model):
    """Append-only history: the original and every amendment/deprecation of an event."""

    class Action(models.TextChoices):
        INGEST = "ingest"
        AMEND = "amend"
        DEPRECATE = "deprecate"

    event = models.ForeignKey(Event, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    action = models.CharField(max_length=20, choices=Action.choices)
    event_name = models.CharField(max_length=255)
    timestamp = models.DateTimeField()
    properties = ExactJSONField(default=dict, blank=True)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="+")
    external_customer_id = models.CharField(max_length=255, null=True, blank=True)
    deprecated = models.BooleanField(default=False)
    actor = models.CharField(max_length=255, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=tz.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event", "version"], name="event_version_unique"),
        ]

    def __str__(self):
        return f"{self.event_id} v{self.version} ({self.action})"


class Meter(models.Model):
    class Aggregation(models.TextChoices):
        SUM = "sum"
        COUNT = "count"
        UNIQUE_COUNT = "unique_count"
        MAX = "max"
        MIN = "min"
        AVG = "avg"
        LATEST = "latest"

    id = models.CharField(primary_key=True, max_length=40, default=id_factory("mtr"),
                          editable=False)
    slug = models.CharField(max_length=100)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    event_name = models.CharField(max_length=255)
    aggregation = models.CharField(max_length=20, choices=Aggregation.choices)
    value_property = models.CharField(max_length=255, null=True, blank=True)
    group_by = models.JSONField(default=dict, blank=True,
                                help_text="{group name: property name}")
    created_at = models.DateTimeField(default=tz.now, editable=False)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["created_at", "id"], name="meter_created_idx"),
            models.Index(fields=["event_name"], name="meter_event_name_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["slug"], condition=Q(archived_at__isnull=True),
                                    name="meter_slug_unique_active"),
            models.CheckConstraint(
                condition=Q(aggregation__in=["sum", "count", "unique_count", "max", "min",
                                             "avg", "latest"]),
                name="meter_aggregation_valid"),
            models.CheckConstraint(
                condition=Q(aggregation="count") | (Q(value_property__isnull=False)
                                                    & ~Q(value_property="")),
                name="meter_value_property_required"),
        ]

    def __str__(self):
        return self.slug


HOUR = 3600
DAY = 86400
ROLLUP_SIZES = (HOUR, DAY)


class RollupWatermark(models.Model):
    """One row: rollups hold exactly the counted events with ins_seq < seq (see rollups.py)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    compacted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="rollup_watermark_single")]

    def __str__(self):
        return f"rollups below batch {self.seq}"


class UsageRollup(models.Model):
    """Partial aggregates of counted events per (meter, customer, group, UTC hour or day).

    Derived data (rebuildable from events): no FK constraints, and byte-order ("C") ids so the
    key index compares fast.
    """

    meter_id = models.CharField(max_length=40, db_collation="C")
    customer_id = models.CharField(max_length=40, db_collation="C")
    size = models.PositiveIntegerField(help_text="bucket length in seconds: 3600 or 86400")
    bucket = models.DateTimeField()
    grp = models.JSONField(default=dict)
    grp_hash = models.UUIDField(help_text="md5 of grp (the key; grp itself may be long)")
    events = models.BigIntegerField()
    valued = models.BigIntegerField()
    total = NumericField(null=True)
    min = NumericField(null=True)
    max = NumericField(null=True)
    latest_ts = models.DateTimeField(null=True)
    latest_id = models.CharField(max_length=256, null=True)
    latest_value = NumericField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["meter_id", "customer_id", "size", "bucket", "grp_hash"],
                name="usage_rollup_key"),
            models.CheckConstraint(condition=Q(size__in=ROLLUP_SIZES), name="usage_rollup_size"),
        ]

    def __str__(self):
        return f"{self.meter_id} {self.customer_id} {self.bucket}"


class UniqueValueRollup(models.Model):
    """Distinct values of a unique_count meter per (customer, group, hour or day), with counts."""

    meter_id = models.CharField(max_length=40, db_collation="C")
    customer_id = models.CharField(max_length=40, db_collation="C")
    size = models.PositiveIntegerField()
    bucket = models.DateTimeField()
    grp = models.JSONField(default=dict)
    grp_hash = models.UUIDField()
    value_key = models.TextField(help_text="type-tagged canonical text of the value")
    value_hash = models.UUIDField(help_text="md5 of value_key")
    events = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["meter_id", "customer_id", "size", "bucket", "grp_hash", "value_hash"],
                name="unique_value_rollup_key"),
            models.CheckConstraint(condition=Q(size__in=ROLLUP_SIZES),
                                   name="unique_value_rollup_size"),
        ]

    def __str__(self):
        return f"{self.meter_id} {self.customer_id} {self.bucket} {self.value_key}"
