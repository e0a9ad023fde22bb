"""Staff screens: plans and pricing rules (validated by the services), invoices with line items
and the issue / mark paid / void / refund actions (confirmation page, reason, permission,
audit record written by the service in the same transaction)."""

import json
from decimal import Decimal

from django import forms
from django.contrib import admin
from django.core.serializers.json import DjangoJSONEncoder
from django.utils.html import format_html, format_html_join

from billing_project.admin import confirm_action
from billing_project.api import public_url
from billing_project.errors import DomainError
from invoicing import services
from invoicing.models import (
    CreditNote,
    Invoice,
    InvoiceLineItem,
    Plan,
    PricingRule,
    UsageSettlement,
)
from ledgers.admin import ReadOnlyAdmin


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# --------------------------------------------------------------------------------------------
# Plans and pricing rules
# --------------------------------------------------------------------------------------------


class PricingRuleInline(ReadOnlyInline):
    model = PricingRule
    fields = ("name", "meter_slug", "model", "unit_amount", "package_size", "archived_at")
    readonly_fields = fields
    show_change_link = True


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("name", "key", "currency", "billing_interval", "created_at")
    search_fields = ("name", "key", "id")
    list_filter = ("currency", "billing_interval")
    fields = ("id", "key", "name", "currency", "billing_interval", "created_at")
    readonly_fields = ("id", "created_at")
    inlines = [PricingRuleInline]

    def get_inlines(self, request, obj=None):
        return self.inlines if obj is not None else []

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:  # customers are billed by these: only the name changes
            return ("id", "key", "currency", "billing_interval", "created_at")
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        try:
            if change:
                saved = services.plan_update(actor=request.user, plan=obj,
                                             name=form.cleaned_data["name"])
            else:
                saved = services.plan_create(
                    actor=request.user, key=form.cleaned_data["key"],
                    name=form.cleaned_data["name"], currency=form.cleaned_data["currency"],
                    billing_interval=form.cleaned_data["billing_interval"])
        except DomainError as exc:  # validated in the form; a race still lands here
            raise forms.ValidationError(exc.detail) from exc
        obj.pk, obj.created_at, obj.currency = saved.pk, saved.created_at, saved.currency


class DecimalJSONDecoder(json.JSONDecoder):
    """Numbers typed into the admin stay exact (pricing refuses floats)."""

    def __init__(self, *args, **kwargs):
        kwargs["parse_float"] = Decimal
        super().__init__(*args, **kwargs)


class PricingRuleForm(forms.ModelForm):
    tiers = forms.JSONField(required=False, decoder=DecimalJSONDecoder,
                            encoder=DjangoJSONEncoder, help_text='[{"up_to": "100", "unit_amount": '
                            '"0.10", "flat_amount": "0"}, {"up_to": null, "unit_amount": '
                            '"0.05"}]')
    filters = forms.JSONField(required=False, help_text='{"region": "eu"}')

    class Meta:
        model = PricingRule
        fields = ("name", "meter_slug", "plan", "currency", "model", "unit_amount", "tiers",
                  "package_size", "filters")

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        self._drop_unused(data)
        instance = None if self.instance._state.adding else self.instance
        try:
            if instance is not None:  # meter, plan and currency are fixed once created
                meter = services.meter_resolve(meter_id=instance.meter_id)
                plan, currency = instance.plan, instance.currency
            else:
                meter = services.meter_resolve(meter_slug=data.get("meter_slug"))
                plan = data.get("plan")
                currency = services.normalize_currency(data.get("currency") or "")
            if plan is not None and plan.currency != currency:
                raise DomainError(f"The rule's currency {currency} differs from the plan's "
                                  f"{plan.currency}.", field="currency")
            # Fields not on the form (read-only) keep the rule's values.
            values = {f: data[f] if f in data else getattr(instance, f, None)
                      for f in ("model", "unit_amount", "tiers", "package_size", "filters")}
            services.pricing_rule_validate(
                model=values["model"], unit_amount=values["unit_amount"],
                tiers=values["tiers"] or None, package_size=values["package_size"],
                filters=values["filters"] or {}, meter=meter)
        except DomainError as exc:
            field = (exc.field or "").split("[")[0].split(".")[0]
            if field not in self.fields:
                field = None
            raise forms.ValidationError({field: exc.detail} if field else exc.detail) from exc
        except TypeError as exc:
            raise forms.ValidationError(str(exc)) from exc
        if data.get("tiers"):  # exact decimal strings, as the API stores them
            data["tiers"] = services.tiers_for_storage(data["tiers"])
        return data

    def _post_clean(self):
        self._drop_unused(self.cleaned_data)
        tiers = self.cleaned_data.get("tiers")
        if tiers:  # decimals as strings: the model's JSON field cannot hold Decimal
            self.cleaned_data["tiers"] = json.loads(json.dumps(tiers, cls=DjangoJSONEncoder))
        super()._post_clean()

    def _drop_unused(self, data):
        """Parameters the chosen model does not use are dropped (the form shows them all)."""
        if "model" not in data:
            return
        if data["model"] in ("graduated", "volume"):
            data["unit_amount"] = None
        else:
            data["tiers"] = None
        if data["model"] != "package":
            data["package_size"] = None


@admin.register(PricingRule)
class PricingRuleAdmin(admin.ModelAdmin):
    form = PricingRuleForm
    list_display = ("name", "meter_slug", "plan", "model", "currency", "unit_amount",
                    "archived_at", "created_at")
    list_filter = ("model", "currency", ("archived_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "id", "meter_slug", "meter_id")
    actions = ["archive_rules"]

    FIXED = ("id", "meter_id", "meter_slug", "plan", "currency", "created_at", "archived_at")
    PRICING = ("model", "unit_amount", "tiers", "package_size", "filters")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        if obj.archived_at is not None:
            return (*self.FIXED, "name", *self.PRICING)
        if services.pricing_rule_in_use(obj):  # issued invoices priced with it: name only
            return (*self.FIXED, *self.PRICING)
        return self.FIXED

    def get_fields(self, request, obj=None):
        if obj is not None:
            return (*self.FIXED, "name", *self.PRICING)
        return super().get_fields(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def has_archive_permission(self, request):
        return request.user.has_perm("invoicing.archive_pricingrule")

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            editable = {"name", *self.PRICING} - set(self.get_readonly_fields(request, obj))
            changes = {f: data.get(f) for f in form.changed_data if f in editable}
            if changes:
                try:
                    services.pricing_rule_update(actor=request.user, rule=obj, **changes)
                except DomainError as exc:  # e.g. issued meanwhile
                    raise forms.ValidationError(exc.detail) from exc
            return
        saved = services.pricing_rule_create(
            actor=request.user, name=data["name"], meter_slug=data["meter_slug"],
            plan_id=data["plan"].pk if data.get("plan") else None, currency=data["currency"],
            model=data["model"], unit_amount=data.get("unit_amount"),
            tiers=data.get("tiers") or None, package_size=data.get("package_size"),
            filters=data.get("filters") or {})
        obj.pk, obj.created_at = saved.pk, saved.created_at

    @admin.action(description="Archive selected pricing rules", permissions=["archive"])
    def archive_rules(self, request, queryset):
        return confirm_action(
            self, request, queryset, action="archive_rules", title="Archive pricing rules",
            form_class=ReasonForm,
            run=lambda rule, data, user: services.pricing_rule_archive(
                actor=user, rule=rule, reason=data["reason"]))


# --------------------------------------------------------------------------------------------
# Invoices
# --------------------------------------------------------------------------------------------


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
                             help_text="Recorded in the audit log.")


class MarkPaidForm(ReasonForm):
    payment_received_date = forms.DateTimeField(required=False,
                                                help_text="Default: now (UTC).")
    external_id = forms.CharField(required=False, max_length=255)


class RefundForm(ReasonForm):
    amount = forms.DecimalField(required=False, max_digits=30, decimal_places=12,
                                min_value=0, help_text="Default: everything still refundable.")


class LineItemInline(ReadOnlyInline):
    model = InvoiceLineItem
    fields = ("name", "meter_slug", "model", "quantity", "amount", "credits_applied",
              "tier_breakdown")
    readonly_fields = fields

    @admin.display(description="Tiers")
    def tier_breakdown(self, obj):
        if not obj.tiers:
            return "—"
        return format_html_join(
            "", "<div>{}–{}: {} × {} + {} = {}</div>",
            ((t["first_unit"], t["up_to"] or "∞", t["quantity"], t["unit_amount"],
              t["flat_amount"], t["amount"]) for t in obj.tiers))


class CreditNoteInline(ReadOnlyInline):
    model = CreditNote
    fields = ("id", "amount", "reason", "actor", "created_at")
    readonly_fields = fields


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "customer", "status", "kind", "period_start", "period_end",
                    "subtotal", "credits_applied", "amount_due", "hosted_link")
    list_filter = ("status", "kind", "currency")
    search_fields = ("id", "invoice_number", "customer__name", "customer__external_customer_id")
    list_select_related = ("customer",)
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    inlines = [LineItemInline, CreditNoteInline]
    actions = ["issue_invoices", "mark_paid", "void_invoices", "refund_invoices"]
    fields = ("id", "invoice_number", "customer", "plan", "kind", "status", "currency",
              "period_start", "period_end", "subtotal", "credits_applied", "total",
              "amount_due", "amount_paid", "amount_refunded", "issued_at", "due_date",
              "paid_at", "voided_at", "payment_external_id", "payment_notes", "memo",
              "credit_block_id", "hosted_link", "created_at")
    readonly_fields = fields

    def has_issue_permission(self, request):
        return request.user.has_perm("invoicing.issue_invoice")

    def has_mark_paid_permission(self, request):
        return request.user.has_perm("invoicing.mark_invoice_paid")

    def has_void_permission(self, request):
        return request.user.has_perm("invoicing.void_invoice")

    def has_refund_permission(self, request):
        return request.user.has_perm("invoicing.refund_invoice")

    @admin.display(description="Hosted page")
    def hosted_link(self, obj):
        return format_html('<a href="{}" target="_blank" rel="noopener">view</a>',
                           public_url(obj.hosted_path))

    @admin.action(description="Issue selected draft invoices", permissions=["issue"])
    def issue_invoices(self, request, queryset):
        return confirm_action(
            self, request, queryset, action="issue_invoices", title="Issue invoices",
            form_class=ReasonForm,
            run=lambda invoice, data, user: services.invoice_issue(
                invoice=invoice, actor=user, reason=data["reason"]))

    @admin.action(description="Mark selected invoices paid", permissions=["mark_paid"])
    def mark_paid(self, request, queryset):
        return confirm_action(
            self, request, queryset, action="mark_paid", title="Mark invoices paid",
            form_class=MarkPaidForm,
            run=lambda invoice, data, user: services.invoice_mark_paid(
                invoice=invoice, actor=user, reason=data["reason"],
                payment_received_date=data.get("payment_received_date"),
                external_id=data.get("external_id") or None))

    @admin.action(description="Void selected invoices (returns their credits)",
                  permissions=["void"])
    def void_invoices(self, request, queryset):
        return confirm_action(
            self, request, queryset, action="void_invoices", title="Void invoices",
            form_class=ReasonForm,
            run=lambda invoice, data, user: services.invoice_void(
                invoice=invoice, actor=user, reason=data["reason"]))

    @admin.action(description="Refund selected paid invoices (credit note)",
                  permissions=["refund"])
    def refund_invoices(self, request, queryset):
        return confirm_action(
            self, request, queryset, action="refund_invoices", title="Refund invoices",
            form_class=RefundForm,
            run=lambda invoice, data, user: services.invoice_refund(
                invoice=invoice, actor=user, reason=data["reason"],
                amount=data.get("amount") or None))


@admin.register(CreditNote)
class CreditNoteAdmin(ReadOnlyAdmin):
    list_display = ("id", "invoice", "amount", "reason", "actor", "created_at")
    search_fields = ("id", "invoice__id", "invoice__invoice_number", "reason")
    list_select_related = ("invoice",)
    ordering = ("-created_at",)


@admin.register(UsageSettlement)
class UsageSettlementAdmin(ReadOnlyAdmin):
    """Checkpoints of usage paid from credits (what `settle_usage` wrote, and why)."""

    list_display = ("customer", "pricing_rule", "period_start", "step", "usage_end", "cost",
                    "paid", "step_paid", "invoice")
    search_fields = ("customer__id", "customer__external_customer_id", "pricing_rule__id")
    list_select_related = ("customer", "pricing_rule", "invoice")
    ordering = ("-created_at",)
