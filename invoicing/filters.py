import django_filters

from billing_project.filters import CreatedAtFilterSet
from invoicing.models import INVOICE_STATUSES, Invoice, Plan, PricingRule


class PlanFilter(CreatedAtFilterSet):
    class Meta:
        model = Plan
        fields = ["key"]


class PricingRuleFilter(CreatedAtFilterSet):
    meter_id = django_filters.CharFilter(field_name="meter_id")
    plan_id = django_filters.CharFilter(field_name="plan_id")
    include_archived = django_filters.BooleanFilter(method="filter_archived")

    class Meta:
        model = PricingRule
        fields = ["meter_id", "plan_id"]

    def filter_archived(self, queryset, name, value):
        return queryset  # applied in filter_queryset, which also covers the default

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("include_archived"):
            queryset = queryset.filter(archived_at__isnull=True)
        return queryset


class InvoiceFilter(CreatedAtFilterSet):
    customer_id = django_filters.CharFilter(field_name="customer_id")
    external_customer_id = django_filters.CharFilter(field_name="customer__external_customer_id")
    status = django_filters.ChoiceFilter(choices=[(s, s) for s in INVOICE_STATUSES])
    # Orb's clients send lists as `status[]=issued&status[]=paid`.
    locals()["status[]"] = django_filters.MultipleChoiceFilter(
        field_name="status", choices=[(s, s) for s in INVOICE_STATUSES])

    class Meta:
        model = Invoice
        fields = ["customer_id", "status"]
