import json

from django.contrib import admin
from django.utils.html import format_html

from ledgers import services
from ledgers.models import ApiKey, AuditLog, Customer


class ReadOnlyAdmin(admin.ModelAdmin):
    """Append-only records: viewable, never added, changed or deleted through the admin."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("name", "email", "external_customer_id", "currency", "timezone", "created_at")
    search_fields = ("name", "email", "external_customer_id", "id")
    list_filter = ("currency", "timezone")
    readonly_fields = ("id", "created_at", "metadata_pretty")
    fields = ("id", "name", "email", "external_customer_id", "currency", "timezone",
              "allow_negative_balance", "plan_id", "billing_anchor", "metadata",
              "metadata_pretty", "created_at")
    ordering = ("-created_at",)

    def has_delete_permission(self, request, obj=None):
        return False  # customers own ledgers; they are never deleted

    @admin.display(description="Metadata (formatted)")
    def metadata_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.metadata or {}, indent=2,
                                                        sort_keys=True))

    def save_model(self, request, obj, form, change):
        values = {f: form.cleaned_data.get(f) for f in form.changed_data
                  if f in services.CUSTOMER_FIELDS}
        if change:
            updatable = {k: v for k, v in values.items() if k in services.CUSTOMER_UPDATABLE}
            saved = services.customer_update(actor=request.user, customer=obj, **updatable)
        else:
            values = {f: form.cleaned_data.get(f) for f in services.CUSTOMER_FIELDS
                      if f in form.cleaned_data}
            saved = services.customer_create(actor=request.user, **values)
        obj.pk = saved.pk
        obj.created_at = saved.created_at


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ("name", "prefix", "scopes", "created_at", "revoked_at")
    search_fields = ("name", "prefix")
    exclude = ("key_hash",)


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor", "action", "target_type", "target_id", "reason")
    list_filter = ("action", "target_type")
    search_fields = ("actor", "action", "target_id", "reason")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
