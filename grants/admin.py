"""Credits in the admin: read-only ledgers, blocks and entries; staff credit actions.

Every staff action (increment, decrement, void, amend, change expiry) shows a confirmation
page with a required reason, checks the `grants.change_creditblock` permission, and calls the
same service as the API, which writes the audit record in the same transaction.
"""

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.urls import reverse
from django.utils.html import format_html

from billing_project.admin import render_confirmation
from billing_project.decimals import DecimalInputError, parse_decimal
from billing_project.errors import DomainError
from grants import selectors, services
from grants.models import CreditBlock, TopUp
from ledgers.models import Ledger, LedgerEntry

CREDIT_PERMISSION = "grants.change_creditblock"


class _ReadOnly:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class CreditActionPermission:
    """`@admin.action(permissions=["credit_action"])` -> this check."""

    def has_credit_action_permission(self, request):
        return request.user.has_perm(CREDIT_PERMISSION)


# --------------------------------------------------------------------------------------------
# Forms: each needs a reason
# --------------------------------------------------------------------------------------------

class AmountFormField(forms.CharField):
    def __init__(self, *, positive=True, **kwargs):
        self.positive = positive
        super().__init__(**kwargs)

    def to_python(self, value):
        value = super().to_python(value)
        if value in ("", None):
            return None
        try:
            amount = parse_decimal(value)
        except DecimalInputError as exc:
            raise forms.ValidationError(str(exc)) from None
        if self.positive and amount <= 0:
            raise forms.ValidationError("Must be greater than 0.")
        return amount


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=True,
                             help_text="Required: recorded in the audit log.")

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("A reason is required.")
        return reason


class IncrementForm(ReasonForm):
    amount = AmountFormField()
    expiry_date = forms.DateTimeField(required=False, help_text="UTC, optional")
    per_unit_cost_basis = AmountFormField(required=False, positive=False)
    description = forms.CharField(required=False)
    field_order = ["amount", "expiry_date", "per_unit_cost_basis", "description", "reason"]


class DecrementForm(ReasonForm):
    amount = AmountFormField()
    description = forms.CharField(required=False)
    field_order = ["amount", "description", "reason"]


class VoidForm(ReasonForm):
    amount = AmountFormField(required=False, help_text="Empty: everything left in the block")
    void_reason = forms.ChoiceField(choices=[("", "—"), ("refund", "refund")], required=False)
    field_order = ["amount", "void_reason", "reason"]


class AmendForm(ReasonForm):
    amount = AmountFormField()
    field_order = ["amount", "reason"]


class ChangeExpiryForm(ReasonForm):
    target_expiry_date = forms.DateTimeField(help_text="UTC")
    amount = AmountFormField(required=False, help_text="Empty: the whole balance")
    field_order = ["target_expiry_date", "amount", "reason"]


def _confirm(modeladmin, request, queryset, *, form_class, title, apply):
    """Django-delete-style confirmation: GET shows the form, POST with `confirm` applies."""
    form = form_class(request.POST if "confirm" in request.POST else None)
    if "confirm" in request.POST and form.is_valid():
        data = dict(form.cleaned_data)
        reason = data.pop("reason")
        try:
            with transaction.atomic():
                for obj in queryset:
                    apply(obj, actor=request.user, reason=reason, **data)
        except DomainError as exc:
            form.add_error(None, f"{exc.detail} ({exc.code})")
        else:
            modeladmin.message_user(request, f"{title}: done for {len(queryset)} item(s).",
                                    messages.SUCCESS)
            return None
    return render_confirmation(modeladmin, request, queryset, form=form, title=title)


def _clean(data):
    return {k: v for k, v in data.items() if v not in (None, "")}


# --------------------------------------------------------------------------------------------
# Ledgers: balances per customer and currency, with blocks and entries
# --------------------------------------------------------------------------------------------

class OpenBlockInline(_ReadOnly, admin.TabularInline):
    model = CreditBlock
    verbose_name_plural = "Open credit blocks"
    fields = ("block_link", "balance", "initial_amount", "priority", "effective_at",
              "expires_at", "per_unit_cost_basis", "status")
    readonly_fields = fields
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).filter(status__in=services.OPEN)

    @admin.display(description="Block")
    def block_link(self, obj):
        url = reverse("admin:grants_creditblock_change", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, obj.pk)


class EntryInline(_ReadOnly, admin.TabularInline):
    model = LedgerEntry
    fk_name = "ledger"
    verbose_name_plural = "Ledger (newest first)"
    fields = ("sequence_number", "entry_type", "entry_status", "amount", "starting_balance",
              "ending_balance", "credit_block", "description", "actor", "created_at")
    readonly_fields = fields
    ordering = ("-sequence_number",)
    extra = 0
    max_num = 0


@admin.register(Ledger)
class LedgerAdmin(CreditActionPermission, _ReadOnly, admin.ModelAdmin):
    list_display = ("customer", "currency", "balance_now", "debt", "pending", "available_now",
                    "last_sequence_number")
    list_filter = ("currency",)
    search_fields = ("customer__name", "customer__external_customer_id", "customer__id")
    list_select_related = ("customer",)
    fields = ("customer", "currency", "balance_now", "balance", "debt", "pending",
              "available_now", "last_sequence_number", "created_at")
    readonly_fields = fields
    inlines = [OpenBlockInline, EntryInline]
    actions = ["increment_credits", "decrement_credits"]

    def has_change_permission(self, request, obj=None):
        return False

    @staticmethod
    def _balance(obj):
        if not hasattr(obj, "_balance_now"):
            obj._balance_now = selectors.credit_balance(customer=obj.customer,
                                                        currency=obj.currency)
        return obj._balance_now

    @admin.display(description="Balance now")
    def balance_now(self, obj):
        return self._balance(obj).balance

    @admin.display(description="Available now")
    def available_now(self, obj):
        return self._balance(obj).available

    @admin.action(description="Increment credits…", permissions=["credit_action"])
    def increment_credits(self, request, queryset):
        def apply(ledger, **data):
            services.credit_increment(customer=ledger.customer, currency=ledger.currency,
                                      **_clean(data))
        return _confirm(self, request, queryset, form_class=IncrementForm,
                        title="Increment credits", apply=apply)

    @admin.action(description="Decrement credits…", permissions=["credit_action"])
    def decrement_credits(self, request, queryset):
        def apply(ledger, **data):
            services.credit_decrement(customer=ledger.customer, currency=ledger.currency,
                                      **_clean(data))
        return _confirm(self, request, queryset, form_class=DecrementForm,
                        title="Decrement credits", apply=apply)


@admin.register(CreditBlock)
class CreditBlockAdmin(CreditActionPermission, _ReadOnly, admin.ModelAdmin):
    list_display = ("id", "customer", "currency", "balance", "initial_amount", "status",
                    "priority", "effective_at", "expires_at", "per_unit_cost_basis")
    list_filter = ("status", "currency", "source")
    search_fields = ("id", "customer__name", "customer__external_customer_id")
    list_select_related = ("customer",)
    readonly_fields = [f.name for f in CreditBlock._meta.fields]
    ordering = ("-created_at",)
    actions = ["void_blocks", "amend_blocks", "change_expiry"]

    @admin.action(description="Void block…", permissions=["credit_action"])
    def void_blocks(self, request, queryset):
        def apply(block, *, void_reason=None, **data):
            services.credit_block_void(customer=block.customer, block_id=block.pk,
                                       void_reason=void_reason or None, **_clean(data))
        return _confirm(self, request, queryset, form_class=VoidForm, title="Void credit block",
                        apply=apply)

    @admin.action(description="Amend block (return credits)…", permissions=["credit_action"])
    def amend_blocks(self, request, queryset):
        def apply(block, **data):
            services.credit_block_amend(customer=block.customer, block_id=block.pk,
                                        **_clean(data))
        return _confirm(self, request, queryset, form_class=AmendForm,
                        title="Amend credit block", apply=apply)

    @admin.action(description="Change expiry…", permissions=["credit_action"])
    def change_expiry(self, request, queryset):
        def apply(block, **data):
            services.credit_block_change_expiry(customer=block.customer, block_id=block.pk,
                                                **_clean(data))
        return _confirm(self, request, queryset, form_class=ChangeExpiryForm,
                        title="Change credit block expiry", apply=apply)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ("created_at", "customer", "currency", "sequence_number", "entry_type",
                    "entry_status", "amount", "starting_balance", "ending_balance",
                    "credit_block", "actor")
    list_filter = ("entry_type", "entry_status", "currency")
    search_fields = ("id", "customer__name", "customer__external_customer_id",
                     "credit_block__id")
    list_select_related = ("customer", "credit_block")
    readonly_fields = [f.name for f in LedgerEntry._meta.fields]
    ordering = ("-created_at",)


@admin.register(TopUp)
class TopUpAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ("id", "customer", "currency", "threshold", "amount", "armed", "deleted_at")
    list_filter = ("currency",)
    readonly_fields = [f.name for f in TopUp._meta.fields]
