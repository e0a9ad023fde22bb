"""Features, entitlements, entitlement grants, resets and balance snapshots (API.md §5).

The entitlement grant model lives here (not in `grants`) so that one app writes it; the
burn-down itself is `grants.engine`.
"""

from django.db import models
from django.db.models import F, Q
from django.utils import timezone as tz

from billing_project.ids import id_factory
from ledgers.models import Customer
from metering.models import ExactJSONField, Meter

AMOUNT = {"max_digits": 30, "decimal_places": 12}
FEATURE_KEY_PATTERN = r"^[a-z0-9]+(?:_[a-z0-9]+)*$"


class Feature(models.Model):
    """Something a customer may be entitled to; metered when backed by a meter (by slug)."""

    id = models.CharField(primary_key=True, max_length=40, default=id_factory("feat"),
                          editable=False)
    key = models.CharField(max_length=64)
    name = models.CharField(max_length=255)
    meter_slug = models.CharField(max_length=255, null=True, blank=True)
    meter = models.ForeignKey(Meter, null=True, blank=True, on_delete=models.PROTECT,
                              related_name="+",
                              help_text="the meter resolved from meter_slug at creation")
    meter_group_by_filters = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=tz.now, editable=False)

    class Meta:
        indexes = [models.Index(fields=["created_at", "id"], name="feature_created_idx")]
        constraints = [
            models.UniqueConstraint(fields=["key"], condition=Q(archived_at__isnull=True),
                                    name="feature_key_unique_active"),
            models.CheckConstraint(condition=Q(key__regex=FEATURE_KEY_PATTERN),
                                   name="feature_key_pattern"),
            models.CheckConstraint(
                condition=Q(meter_slug__isnull=False) | Q(meter_group_by_filters={}),
                name="feature_filters_need_meter"),
            models.CheckConstraint(
                condition=Q(meter_slug__isnull=True, meter__isnull=True)
                | Q(meter_slug__isnull=False, meter__isnull=False),
                name="feature_meter_slug_and_id"),
        ]

    def __str__(self):
        return self.key

    @property
    def is_metered(self) -> bool:
        return bool(self.meter_slug)


class Entitlement(models.Model):
    class Type(models.TextChoices):
        METERED = "metered"
        STATIC = "static"
        BOOLEAN = "boolean"

    id = models.CharField(primary_key=True, max_length=40, default=id_factory("ent"),
                          editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT,
                                 related_name="entitlements")
    feature = models.ForeignKey(Feature, on_delete=models.PROTECT, related_name="entitlements")
    type = models.CharField(max_length=10, choices=Type.choices)
    usage_period_interval = models.CharField(max_length=64, null=True, blank=True,
                                             help_text="day|week|month|year or ISO 8601")
    usage_period_anchor = models.DateTimeField(null=True, blank=True)
    measure_usage_from = models.DateTimeField(null=True, blank=True)
    is_soft_limit = models.BooleanField(default=False)
    issue_after_reset = models.DecimalField(null=True, blank=True, **AMOUNT)
    issue_after_reset_priority = models.PositiveIntegerField(default=1)
    preserve_overage_at_reset = models.BooleanField(default=False)
    config = ExactJSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=tz.now, editable=False)

    class Meta:
        indexes = [models.Index(fields=["created_at", "id"], name="entitlement_created_idx")]
        constraints = [
            models.UniqueConstraint(fields=["customer", "feature"],
                                    condition=Q(deleted_at__isnull=True),
                                    name="entitlement_one_active_per_feature"),
            models.CheckConstraint(condition=Q(type__in=["metered", "static", "boolean"]),
                                   name="entitlement_type_valid"),
            models.CheckConstraint(
                condition=~Q(type="metered") | Q(usage_period_interval__isnull=False,
                                                 usage_period_anchor__isnull=False,
                                                 measure_usage_from__isnull=False),
                name="entitlement_metered_has_usage_period"),
            models.CheckConstraint(condition=Q(type="static") | Q(config__isnull=True),
                                   name="entitlement_config_static_only"),
            models.CheckConstraint(condition=Q(issue_after_reset__isnull=True)
                                   | Q(issue_after_reset__gt=0),
                                   name="entitlement_issue_after_reset_positive"),
        ]

    def __str__(self):
        return f"{self.id} ({self.customer_id} {self.feature.key})"

    def is_active_at(self, t) -> bool:
        return self.deleted_at is None or t < self.deleted_at


class EntitlementGrant(models.Model):
    """An amount of usage allowance on a metered entitlement. Never edited; only voided."""

    class Source(models.TextChoices):
        MANUAL = "manual"
        ISSUE_AFTER_RESET = "issue_after_reset"

    id = models.CharField(primary_key=True, max_length=40, default=id_factory("egr"),
                          editable=False)
    entitlement = models.ForeignKey(Entitlement, on_delete=models.PROTECT,
                                    related_name="grants")
    amount = models.DecimalField(**AMOUNT)
    priority = models.PositiveIntegerField(default=1)
    effective_at = models.DateTimeField()
    expiration_duration = models.CharField(max_length=8, null=True, blank=True)
    expiration_count = models.PositiveIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    min_rollover_amount = models.DecimalField(default=0, **AMOUNT)
    max_rollover_amount = models.DecimalField(**AMOUNT)
    recurrence_interval = models.CharField(max_length=64, null=True, blank=True)
    recurrence_anchor = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.MANUAL)
    metadata = models.JSONField(default=dict, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=tz.now, editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["created_at", "id"], name="entgrant_created_idx"),
            models.Index(fields=["entitlement", "effective_at"], name="entgrant_ent_eff_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="entgrant_amount_positive"),
            models.CheckConstraint(condition=Q(min_rollover_amount__gte=0),
                                   name="entgrant_min_rollover_non_negative"),
            models.CheckConstraint(condition=Q(max_rollover_amount__gte=F("min_rollover_amount")),
                                   name="entgrant_min_rollover_le_max"),
            models.CheckConstraint(
                condition=(Q(expiration_duration__isnull=True, expiration_count__isnull=True,
                             expires_at__isnull=True)
                           | Q(expiration_duration__in=["hour", "day", "week", "month", "year"],
                               expiration_count__isnull=False, expiration_count__gte=1,
                               expires_at__isnull=False, expires_at__gt=F("effective_at"))),
                name="entgrant_expiration_complete"),
            models.CheckConstraint(
                condition=Q(recurrence_interval__isnull=True, recurrence_anchor__isnull=True)
                | Q(recurrence_interval__isnull=False, recurrence_anchor__isnull=False),
                name="entgrant_recurrence_complete"),
            models.UniqueConstraint(fields=["entitlement"],
                                    condition=Q(source="issue_after_reset"),
                                    name="entgrant_one_issue_after_reset"),
        ]

    def __str__(self):
        return f"{self.id} ({self.amount})"


class EntitlementReset(models.Model):
    """A usage-period reset. Manual resets are written by the reset endpoint; automatic ones
    (at usage-period boundaries) are computed by reads and only recorded by the job."""

    class Kind(models.TextChoices):
        MANUAL = "manual"
        AUTOMATIC = "automatic"

    id = models.CharField(primary_key=True, max_length=40, default=id_factory("erst"),
                          editable=False)
    entitlement = models.ForeignKey(Entitlement, on_delete=models.PROTECT,
                                    related_name="resets")
    effective_at = models.DateTimeField()
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.MANUAL)
    preserve_overage = models.BooleanField(default=False)
    retain_anchor = models.BooleanField(default=True)
    anchor = models.DateTimeField(help_text="usage-period anchor in effect from this reset on")
    created_at = models.DateTimeField(default=tz.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["entitlement", "effective_at"],
                                    name="entreset_one_per_instant"),
        ]
        indexes = [models.Index(fields=["entitlement", "effective_at"],
                                name="entreset_ent_eff_idx")]

    def __str__(self):
        return f"{self.entitlement_id} reset at {self.effective_at}"


class BalanceSnapshot(models.Model):
    """Cached engine state of a metered entitlement at a segment boundary (a cache only)."""

    entitlement = models.ForeignKey(Entitlement, on_delete=models.CASCADE,
                                    related_name="snapshots")
    at = models.DateTimeField()
    balances = models.JSONField(help_text="{grant_id: decimal string}")
    overage = models.DecimalField(**AMOUNT)
    period_start = models.DateTimeField()
    period_usage = models.DecimalField(**AMOUNT)
    created_at = models.DateTimeField(default=tz.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["entitlement", "at"], name="entsnapshot_unique_at"),
            models.CheckConstraint(condition=Q(overage__gte=0),
                                   name="entsnapshot_overage_non_negative"),
        ]

    def __str__(self):
        return f"{self.entitlement_id} @ {self.at}"
