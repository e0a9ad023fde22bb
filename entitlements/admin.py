"""Staff views: features, entitlements with their current value, grants; reset and void
actions with a confirmation page, a required reason and an audit record (in the services)."""

from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from billing_project.admin import confirm_action
from entitlements import selectors, services
from entitlements.models import Entitlement, EntitlementGrant, EntitlementReset, Feature
from ledgers.admin import ReadOnlyAdmin


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
                             help_text="Required; written to the audit log.")


class ResetForm(ReasonForm):
    preserve_overage = forms.BooleanField(required=False,
                                          help_text="Carry the overage into the new period.")
    retain_anchor = forms.BooleanField(required=False,
                                       help_text="Keep the usage-period anchor (else the new "
                                                 "period starts its schedule now).")


@admin.register(Feature)
class FeatureAdmin(ReadOnlyAdmin):
    list_display = ("key", "name", "meter_slug", "meter_group_by_filters", "created_at",
                    "archived_at")
    search_fields = ("key", "name", "=id", "meter_slug")
    list_filter = (("archived_at", admin.EmptyFieldListFilter),)
    ordering = ("-created_at",)


class GrantInline(admin.TabularInline):
    model = EntitlementGrant
    fields = ("id", "amount", "priority", "effective_at", "expires_at", "min_rollover_amount",
              "max_rollover_amount", "recurrence_interval", "source", "voided_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("effective_at",)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ResetInline(admin.TabularInline):
    model = EntitlementReset
    fields = ("effective_at", "kind", "preserve_overage", "retain_anchor", "anchor")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-effective_at",)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Entitlement)
class EntitlementAdmin(ReadOnlyAdmin):
    """Entitlements per customer (search by customer id or external id) with their value."""

    list_display = ("id", "customer", "feature_key", "type", "has_access", "balance", "usage",
                    "overage", "current_period", "deleted_at")
    list_filter = ("type", ("deleted_at", admin.EmptyFieldListFilter))
    search_fields = ("=id", "=customer__id", "=customer__external_customer_id", "feature__key")
    search_help_text = "Customer id, external customer id, entitlement id or feature key."
    list_select_related = ("customer", "feature")
    list_per_page = 50
    ordering = ("-created_at",)
    readonly_fields = ("id", "customer", "feature", "type", "usage_period_interval",
                       "usage_period_anchor", "measure_usage_from", "is_soft_limit",
                       "issue_after_reset", "issue_after_reset_priority",
                       "preserve_overage_at_reset", "config", "metadata", "created_at",
                       "deleted_at", "has_access", "balance", "usage", "overage",
                       "current_period")
    fields = readonly_fields
    inlines = [GrantInline, ResetInline]
    actions = ["reset_usage"]

    def _value(self, obj):
        cache = getattr(self, "_values", None)
        if cache is None or cache[0] is not obj:
            try:
                value = selectors.entitlement_value(entitlement=obj)
            except Exception:  # a broken meter must not take the admin page down
                value = None
            self._values = (obj, value)
        return self._values[1]

    @admin.display(description="Feature")
    def feature_key(self, obj):
        return obj.feature.key

    @admin.display(description="Access", boolean=True)
    def has_access(self, obj):
        value = self._value(obj)
        return None if value is None else value.has_access

    @admin.display(description="Balance")
    def balance(self, obj):
        value = self._value(obj)
        return "—" if value is None or value.balance is None else value.balance.normalize()

    @admin.display(description="Usage")
    def usage(self, obj):
        value = self._value(obj)
        return "—" if value is None or value.usage is None else value.usage.normalize()

    @admin.display(description="Overage")
    def overage(self, obj):
        value = self._value(obj)
        return "—" if value is None or value.overage is None else value.overage.normalize()

    @admin.display(description="Current usage period")
    def current_period(self, obj):
        start, end, _ = selectors.current_usage_period(obj, timezone.now())
        return "—" if start is None else f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"

    def has_reset_permission(self, request):
        return request.user.has_perm("entitlements.change_entitlement")

    @admin.action(description="Reset usage…", permissions=["reset"])
    def reset_usage(self, request, queryset):
        queryset = queryset.filter(type=Entitlement.Type.METERED).select_related(
            "customer", "feature")
        if not queryset.exists():
            self.message_user(request, "Only metered entitlements can be reset.",
                              messages.ERROR)
            return None
        return confirm_action(
            self, request, queryset, action="reset_usage", title="Reset usage",
            form_class=ResetForm, submit_label="Reset",
            intro="A new usage period starts now for these entitlements; grants roll over by "
                  "their rules.",
            lines=[f"{e.pk} — {e.customer} — {e.feature.key}" for e in queryset],
            run=lambda entitlement, data, user: services.entitlement_reset(
                actor=user, entitlement=entitlement, preserve_overage=data["preserve_overage"],
                retain_anchor=data["retain_anchor"], reason=data["reason"]))


@admin.register(EntitlementGrant)
class EntitlementGrantAdmin(ReadOnlyAdmin):
    list_display = ("id", "entitlement", "amount", "priority", "effective_at", "expires_at",
                    "recurrence_interval", "source", "voided_at")
    list_filter = (("voided_at", admin.EmptyFieldListFilter), "source")
    search_fields = ("=id", "=entitlement__id", "=entitlement__customer__id",
                     "=entitlement__customer__external_customer_id",
                     "entitlement__feature__key")
    list_select_related = ("entitlement", "entitlement__customer", "entitlement__feature")
    ordering = ("-created_at",)
    actions = ["void_grants"]

    def has_void_permission(self, request):
        return request.user.has_perm("entitlements.change_entitlementgrant")

    @admin.action(description="Void grant…", permissions=["void"])
    def void_grants(self, request, queryset):
        queryset = queryset.filter(voided_at__isnull=True).select_related(
            "entitlement", "entitlement__customer")
        if not queryset.exists():
            self.message_user(request, "The selected grants are already voided.",
                              messages.ERROR)
            return None
        return confirm_action(
            self, request, queryset, action="void_grants", title="Void grants",
            form_class=ReasonForm, submit_label="Void",
            intro="Voiding is not retroactive: usage already burned stays attributed; the "
                  "remaining balance leaves now.",
            lines=[f"{g.pk} — {g.amount.normalize()} on {g.entitlement_id}" for g in queryset],
            run=lambda grant, data, user: services.grant_void(
                actor=user, grant=grant, reason=data["reason"]))
