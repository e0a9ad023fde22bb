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
