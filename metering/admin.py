"""Staff views: events (search, amend, deprecate with a reason), meters, backfills."""

import msgspec
from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from billing_project.admin import confirm_action, render_confirmation
from billing_project.api import json_dumps, json_loads
from billing_project.errors import DomainError
from ledgers.admin import ReadOnlyAdmin
from metering import services
from metering.models import Backfill, Event, EventVersion, Meter


def _pretty(value) -> str:
    return msgspec.json.format(json_dumps(value or {}), indent=2).decode()


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
                             help_text="Required; written to the audit log.")


class AmendForm(ReasonForm):
    event_name = forms.CharField(max_length=255)
    properties = forms.CharField(widget=forms.Textarea(attrs={"rows": 8, "cols": 60}),
                                 help_text="A flat JSON object.")

    def clean_properties(self):
        try:
            value = json_loads(self.cleaned_data["properties"].encode())
        except (msgspec.DecodeError, ValueError) as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Properties must be a JSON object.")
        return value


class EventVersionInline(admin.TabularInline):
    model = EventVersion
    fields = ("version", "action", "event_name", "properties_json", "deprecated", "actor",
              "reason", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("version",)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Properties")
    def properties_json(self, obj):
        return format_html("<pre>{}</pre>", _pretty(obj.properties))



def _event_lines(queryset) -> list[str]:
    return [f"{e.event_id} — {e.event_name} at {e.timestamp.isoformat()} for "
            f"{e.customer_id or e.external_customer_id}" for e in queryset]

@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "customer", "external_customer_id", "event_name", "timestamp",
                    "counted", "deprecated", "version")
    list_filter = ("deprecated", "counted")
    search_fields = ("=event_id", "=customer__id", "=external_customer_id", "=event_name")
    search_help_text = "Exact idempotency key, customer id, external customer id or event name."
    date_hierarchy = "timestamp"
    ordering = ("-ins_seq", "-event_id")  # newest ingested first, through an index
    show_full_result_count = False
    list_select_related = ("customer",)
    fields = ("event_id", "customer", "external_customer_id", "event_name", "timestamp",
              "properties_json", "counted", "deprecated", "backfill", "replaced_by",
              "version", "created_at", "amended_at")
    readonly_fields = fields
    inlines = [EventVersionInline]
    actions = ["amend_event", "deprecate_events"]

    @admin.display(description="Properties")
    def properties_json(self, obj):
        return format_html("<pre>{}</pre>", _pretty(obj.properties))

    def has_amend_permission(self, request):
        return request.user.has_perm("metering.change_event")

    def _confirm(self, request, queryset, *, form, action, title, intro, submit_label):
        return render_confirmation(self, request, queryset, form=form, action=action,
                                   title=title, intro=intro, lines=_event_lines(queryset),
                                   submit_label=submit_label)

    @admin.action(description="Amend the selected event…", permissions=["amend"])
    def amend_event(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one event to amend.", messages.ERROR)
            return None
        event = queryset.get()
        if "confirm" in request.POST:
            form = AmendForm(request.POST)
            if form.is_valid():
                try:
                    services.event_amend(
                        event_id=event.event_id, event_name=form.cleaned_data["event_name"],
                        properties=form.cleaned_data["properties"], timestamp=event.timestamp,
                        customer_id=event.customer_id,
                        external_customer_id=None if event.customer_id
                        else event.external_customer_id,
                        actor=request.user, reason=form.cleaned_data["reason"])
                except DomainError as exc:
                    self.message_user(request, f"{event.event_id}: {exc.detail}",
                                      messages.ERROR)
                    return None
                self.message_user(request, f"Event {event.event_id} amended.")
                return None
        else:
            form = AmendForm(initial={"event_name": event.event_name,
                                      "properties": _pretty(event.properties)})
        return self._confirm(request, queryset, form=form, action="amend_event",
                             title=f"Amend event {event.event_id}",
                             intro="The current version is kept in the event's history; only "
                                   "the new version counts. Timestamp and customer cannot "
                                   "change.", submit_label="Yes, amend")

    @admin.action(description="Deprecate the selected events…", permissions=["amend"])
    def deprecate_events(self, request, queryset):
        return confirm_action(
            self, request, queryset, action="deprecate_events", title="Deprecate events",
            form_class=ReasonForm, submit_label="Yes, deprecate",
            intro="Deprecated events stop counting for usage, credits and invoices. They are "
                  "kept for audit and their ids can never be ingested again.",
            lines=_event_lines(queryset),
            run=lambda event, data, user: services.event_deprecate(
                event_id=event.event_id, actor=user, reason=data["reason"]))


class MeterForm(forms.ModelForm):
    class Meta:
        model = Meter
        fields = ("slug", "name", "description", "event_name", "aggregation",
                  "value_property", "group_by")

    def clean(self):
        data = super().clean()
        meter = self.instance if self.instance.pk else None
        try:
            services.validate_meter_fields(
                slug=data.get("slug", meter.slug if meter else None),
                event_name=data.get("event_name", meter.event_name if meter else None),
                aggregation=data.get("aggregation", meter.aggregation if meter else None),
                value_property=data.get("value_property",
                                        meter.value_property if meter else None),
                group_by=data.get("group_by") or {})
        except DomainError as exc:
            raise forms.ValidationError({exc.field: exc.detail} if exc.field and exc.field
                                        in self.fields else exc.detail) from None
        return data


@admin.register(Meter)
class MeterAdmin(admin.ModelAdmin):
    form = MeterForm
    list_display = ("slug", "name", "event_name", "aggregation", "value_property",
                    "created_at", "archived_at")
    list_filter = ("aggregation",)
    search_fields = ("slug", "name", "event_name", "=id")
    ordering = ("-created_at",)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ("id", "created_at", "archived_at")
        # API.md §3: aggregation, event_name and value_property never change.
        return ("id", "slug", "event_name", "aggregation", "value_property", "created_at",
                "archived_at")

    def has_delete_permission(self, request, obj=None):
        return False  # meters are archived (DELETE /v1/meters/{id}), never deleted

    def save_model(self, request, obj, form, change):
        if change:
            changes = {f: form.cleaned_data[f] for f in form.changed_data
                       if f in services.MUTABLE_METER_FIELDS}
            saved = services.meter_update(meter=obj, actor=request.user, **changes)
        else:
            values = {f: form.cleaned_data.get(f) for f in MeterForm.Meta.fields}
            saved = services.meter_create(actor=request.user, **values)
        obj.pk = saved.pk
        obj.created_at = saved.created_at

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
            from django.http import HttpResponseRedirect

            return HttpResponseRedirect(request.get_full_path())


@admin.register(Backfill)
class BackfillAdmin(ReadOnlyAdmin):
    list_display = ("id", "customer", "timeframe_start", "timeframe_end",
                    "replace_existing_events", "status", "created_at", "close_time")
    list_filter = ("status", "replace_existing_events")
    search_fields = ("=id", "=customer__id", "=customer__external_customer_id")
    ordering = ("-created_at",)
