"""Features, entitlements and entitlement grants (API.md §5): thin views over services and
selectors."""

from __future__ import annotations

from datetime import UTC, datetime

import django_filters
from django.db import transaction
from django.db.models import Prefetch, Q
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
)
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_project.api import (
    ERRORS,
    PROBLEM,
    AmountField,
    StringMapField,
    TimestampField,
    parse_timestamp,
)
from billing_project.filters import CreatedAtFilterSet
from entitlements import selectors, services
from entitlements.models import Entitlement, EntitlementGrant, EntitlementReset, Feature
from ledgers.selectors import customer_get

NOT_FOUND = {404: PROBLEM}


# --------------------------------------------------------------------------------------------
# Serializers
# --------------------------------------------------------------------------------------------


class FeatureIn(serializers.Serializer):
    key = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=255)
    meter_slug = serializers.CharField(max_length=255, required=False, allow_null=True)
    meter_group_by_filters = StringMapField(required=False, allow_null=True)
    metadata = StringMapField(required=False, allow_null=True)


class FeatureOut(serializers.ModelSerializer):
    meter_id = serializers.CharField(read_only=True, allow_null=True)
    created_at = TimestampField()
    archived_at = TimestampField()

    class Meta:
        model = Feature
        fields = ["id", "key", "name", "meter_slug", "meter_id", "meter_group_by_filters",
                  "metadata", "created_at", "archived_at"]
        read_only_fields = fields


class EntitlementUsagePeriodIn(serializers.Serializer):
    interval = serializers.CharField(max_length=64)
    anchor = TimestampField(required=False, allow_null=True)


class MeasureUsageFromField(TimestampField):
    """A timestamp, or CURRENT_PERIOD_START / NOW (OpenMeter's enum)."""

    def to_internal_value(self, data):
        if isinstance(data, str) and data.upper() in ("CURRENT_PERIOD_START", "NOW"):
            return data.upper()
        return super().to_internal_value(data)


def _enum_field(choices, **kwargs):
    """A choice field documented inline (no shared enum component to collide with)."""

    @extend_schema_field({"type": "string", "enum": list(choices)})
    class InlineChoiceField(serializers.ChoiceField):
        pass

    return InlineChoiceField(choices=list(choices), **kwargs)


class JSONObjectField(serializers.JSONField):
    def to_internal_value(self, data):
        if data is not None and not isinstance(data, dict):
            raise serializers.ValidationError("Must be a JSON object.", code="not_an_object")
        return data


class EntitlementIn(serializers.Serializer):
    type = _enum_field(Entitlement.Type.values)
    feature_key = serializers.CharField(max_length=64, required=False, allow_null=True)
    feature_id = serializers.CharField(max_length=40, required=False, allow_null=True)
    usage_period = EntitlementUsagePeriodIn(required=False, allow_null=True)
    is_soft_limit = serializers.BooleanField(required=False, default=False)
    issue_after_reset = AmountField(required=False, allow_null=True, positive=True)
    issue_after_reset_priority = serializers.IntegerField(required=False, default=1,
                                                          min_value=0, max_value=1_000_000)
    preserve_overage_at_reset = serializers.BooleanField(required=False, default=False)
    measure_usage_from = MeasureUsageFromField(required=False, allow_null=True)
    config = JSONObjectField(required=False, allow_null=True)
    metadata = StringMapField(required=False, allow_null=True)

    def validate(self, attrs):
        if not attrs.get("feature_key") and not attrs.get("feature_id"):
            raise ValidationError({"feature_key": ["feature_key or feature_id is required."]})
        return attrs


class EntitlementUsagePeriodOut(serializers.Serializer):
    interval = serializers.CharField()
    anchor = TimestampField()


class EntitlementPeriodOut(serializers.Serializer):
    """A half-open period [from, to)."""

    def get_fields(self):
        return {"from": TimestampField(), "to": TimestampField()}


def _ts(value):
    return TimestampField().to_representation(value)


class EntitlementOut(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.CharField()
    customer_id = serializers.CharField()
    feature_id = serializers.CharField()
    feature_key = serializers.SerializerMethodField()
    usage_period = serializers.SerializerMethodField()
    current_usage_period = serializers.SerializerMethodField()
    last_reset = serializers.SerializerMethodField()
    measure_usage_from = TimestampField()
    is_soft_limit = serializers.BooleanField()
    issue_after_reset = AmountField()
    issue_after_reset_priority = serializers.IntegerField()
    preserve_overage_at_reset = serializers.BooleanField()
    config = serializers.JSONField()
    metadata = serializers.DictField(child=serializers.CharField())
    created_at = TimestampField()
    deleted_at = TimestampField()

    def _period(self, obj):
        cache = self.context.setdefault("_periods", {})
        if obj.pk not in cache:
            resets = getattr(obj, "manual_resets", None)
            cache[obj.pk] = selectors.current_usage_period(
                obj, self.context.get("now") or timezone.now(), resets)
        return cache[obj.pk]

    def get_feature_key(self, obj) -> str:
        return obj.feature.key

    @extend_schema_field(EntitlementUsagePeriodOut(allow_null=True))
    def get_usage_period(self, obj):
        if not obj.usage_period_interval:
            return None
        return {"interval": obj.usage_period_interval, "anchor": _ts(obj.usage_period_anchor)}

    @extend_schema_field(EntitlementPeriodOut(allow_null=True))
    def get_current_usage_period(self, obj):
        start, end, _ = self._period(obj)
        if start is None:
            return None
        return {"from": _ts(start), "to": _ts(end)}

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_last_reset(self, obj):
        return _ts(self._period(obj)[2])


class GrantExpirationIn(serializers.Serializer):
    duration = _enum_field(services.EXPIRATION_DURATIONS)
    count = serializers.IntegerField(min_value=1, max_value=100_000)

    def to_internal_value(self, data):
        if isinstance(data, dict) and isinstance(data.get("duration"), str):
            data = {**data, "duration": data["duration"].lower()}
        return super().to_internal_value(data)


class GrantRecurrenceIn(serializers.Serializer):
    interval = serializers.CharField(max_length=64)
    anchor = TimestampField(required=False, allow_null=True)


class EntitlementGrantIn(serializers.Serializer):
    amount = AmountField(positive=True)
    priority = serializers.IntegerField(required=False, default=1, min_value=0,
                                        max_value=1_000_000)
    effective_at = TimestampField()
    expiration = GrantExpirationIn()
    min_rollover_amount = AmountField(required=False, non_negative=True)
    max_rollover_amount = AmountField(required=False, allow_null=True, non_negative=True)
    recurrence = GrantRecurrenceIn(required=False, allow_null=True)
    metadata = StringMapField(required=False, allow_null=True)


class GrantExpirationOut(serializers.Serializer):
    duration = serializers.CharField()
    count = serializers.IntegerField()


class GrantRecurrenceOut(serializers.Serializer):
    interval = serializers.CharField()
    anchor = TimestampField()


class EntitlementGrantOut(serializers.Serializer):
    id = serializers.CharField()
    entitlement_id = serializers.CharField()
    customer_id = serializers.SerializerMethodField()
    feature_id = serializers.SerializerMethodField()
    feature_key = serializers.SerializerMethodField()
    amount = AmountField()
    priority = serializers.IntegerField()
    effective_at = TimestampField()
    expiration = serializers.SerializerMethodField()
    expires_at = TimestampField()
    min_rollover_amount = AmountField()
    max_rollover_amount = AmountField()
    recurrence = serializers.SerializerMethodField()
    source = serializers.CharField()
    metadata = serializers.DictField(child=serializers.CharField())
    voided_at = TimestampField()
    created_at = TimestampField()

    def get_customer_id(self, obj) -> str:
        return obj.entitlement.customer_id

    def get_feature_id(self, obj) -> str:
        return obj.entitlement.feature_id

    def get_feature_key(self, obj) -> str:
        return obj.entitlement.feature.key

    @extend_schema_field(GrantExpirationOut(allow_null=True))
    def get_expiration(self, obj):
        if not obj.expiration_duration:
            return None
        return {"duration": obj.expiration_duration, "count": obj.expiration_count}

    @extend_schema_field(GrantRecurrenceOut(allow_null=True))
    def get_recurrence(self, obj):
        if not obj.recurrence_interval:
            return None
        return {"interval": obj.recurrence_interval, "anchor": _ts(obj.recurrence_anchor)}


class EntitlementGrantVoidIn(serializers.Serializer):
    voided_at = TimestampField(required=False, allow_null=True)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class EntitlementResetIn(serializers.Serializer):
    effective_at = TimestampField(required=False, allow_null=True)
    retain_anchor = serializers.BooleanField(required=False, default=False)
    preserve_overage = serializers.BooleanField(required=False, allow_null=True, default=None)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class EntitlementResetOut(serializers.ModelSerializer):
    kind = serializers.CharField()
    effective_at = TimestampField()
    anchor = TimestampField()
    created_at = TimestampField()

    class Meta:
        model = EntitlementReset
        fields = ["id", "entitlement_id", "effective_at", "kind", "retain_anchor",
                  "preserve_overage", "anchor", "created_at"]
        read_only_fields = fields


class EntitlementValueOut(serializers.Serializer):
    has_access = serializers.BooleanField()
    balance = AmountField(allow_null=True)
    usage = AmountField(allow_null=True)
    overage = AmountField(allow_null=True)
    total_available_grant_amount = AmountField(allow_null=True)
    config = serializers.JSONField(allow_null=True)


class EntitlementWindowOut(serializers.Serializer):
    period = EntitlementPeriodOut()
    usage = AmountField()
    balance_at_start = AmountField()
    overage_at_start = AmountField()


class EntitlementGrantUsageOut(serializers.Serializer):
    grant_id = serializers.CharField()
    usage = AmountField()


class EntitlementBurndownOut(serializers.Serializer):
    period = EntitlementPeriodOut()
    usage = AmountField()
    overage = AmountField()
    balance_at_start = AmountField()
    balance_at_end = AmountField()
    grant_usages = EntitlementGrantUsageOut(many=True)


class EntitlementHistoryOut(serializers.Serializer):
    windowed_history = EntitlementWindowOut(many=True)
    burndown_history = EntitlementBurndownOut(many=True)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _bool_param(request, name: str, default: bool = False) -> bool:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ValidationError({name: ["Must be true or false."]})


# Reads run usage periods and recurrences forward from the time asked for: a year of room
# before the end of the calendar datetime can represent (9999-12-31).
LATEST_READ_TIME = datetime(9999, 1, 1, tzinfo=UTC)


def _time_param(request, name: str):
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = parse_timestamp(raw)
    except ValueError as exc:
        raise ValidationError({name: [str(exc)]}) from None
    if value >= LATEST_READ_TIME:
        raise ValidationError({name: ["Times from 9999-01-01T00:00:00Z on are not supported."]})
    return value


def _entitlements_qs():
    return Prefetch("resets", to_attr="manual_resets",
                    queryset=EntitlementReset.objects.filter(kind=EntitlementReset.Kind.MANUAL))


class _CustomerMixin:
    by_external = False

    def get_customer(self, customer_key):
        if self.by_external:
            return customer_get(external_customer_id=customer_key)
        return customer_get(customer_id=customer_key)

    def get_entitlement(self, customer_key, key):
        customer = self.get_customer(customer_key)
        return selectors.entitlement_get(customer=customer, id_or_feature_key=key)


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


class FeatureFilter(CreatedAtFilterSet):
    class Meta:
        model = Feature
        fields = ["key", "meter_slug"]


INCLUDE_ARCHIVED = OpenApiParameter("include_archived", bool, required=False)


class FeatureListCreate(generics.GenericAPIView):
    queryset = Feature.objects.all()
    filterset_class = FeatureFilter
    serializer_class = FeatureOut

    @extend_schema(operation_id="features_list", parameters=[INCLUDE_ARCHIVED],
                   responses={200: FeatureOut(many=True), **ERRORS})
    def get(self, request):
        qs = selectors.feature_list(include_archived=_bool_param(request, "include_archived"))
        page = self.paginate_queryset(self.filter_queryset(qs))
        return self.get_paginated_response(FeatureOut(page, many=True).data)

    @extend_schema(operation_id="features_create", request=FeatureIn,
                   responses={201: FeatureOut, 409: PROBLEM, **ERRORS})
    def post(self, request):
        data = FeatureIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        feature = services.feature_create(
            actor=request.user, key=v["key"], name=v["name"], meter_slug=v.get("meter_slug"),
            meter_group_by_filters=v.get("meter_group_by_filters"), metadata=v.get("metadata"))
        return Response(FeatureOut(feature).data, status=status.HTTP_201_CREATED)


class FeatureDetail(APIView):
    @extend_schema(operation_id="features_fetch",
                   responses={200: FeatureOut, **NOT_FOUND, **ERRORS})
    def get(self, request, key):
        return Response(FeatureOut(selectors.feature_get(id_or_key=key)).data)

    @extend_schema(operation_id="features_archive",
                   responses={200: FeatureOut, 409: PROBLEM, **NOT_FOUND, **ERRORS})
    def delete(self, request, key):
        feature = services.feature_archive(actor=request.user,
                                           feature=selectors.feature_get(id_or_key=key))
        return Response(FeatureOut(feature).data)


# --------------------------------------------------------------------------------------------
# Entitlements
# --------------------------------------------------------------------------------------------


class EntitlementFilter(CreatedAtFilterSet):
    type = django_filters.ChoiceFilter(choices=Entitlement.Type.choices)
    feature = django_filters.CharFilter(method="filter_feature")

    class Meta:
        model = Entitlement
        fields = ["type"]

    def filter_feature(self, queryset, name, value):
        return queryset.filter(Q(feature__key=value) | Q(feature_id=value))


INCLUDE_DELETED = OpenApiParameter("include_deleted", bool, required=False)


class EntitlementListCreate(_CustomerMixin, generics.GenericAPIView):
    queryset = Entitlement.objects.all()
    filterset_class = EntitlementFilter
    serializer_class = EntitlementOut

    @extend_schema(operation_id="entitlements_list", parameters=[INCLUDE_DELETED],
                   responses={200: EntitlementOut(many=True), **NOT_FOUND, **ERRORS})
    def get(self, request, customer_id):
        customer = self.get_customer(customer_id)
        qs = (selectors.entitlement_list(customer=customer,
                                         include_deleted=_bool_param(request, "include_deleted"))
              .select_related("customer").prefetch_related(_entitlements_qs()))
        page = self.paginate_queryset(self.filter_queryset(qs))
        return self.get_paginated_response(EntitlementOut(page, many=True).data)

    @extend_schema(operation_id="entitlements_create", request=EntitlementIn,
                   responses={201: EntitlementOut, 409: PROBLEM, **NOT_FOUND, **ERRORS})
    def post(self, request, customer_id):
        customer = self.get_customer(customer_id)
        data = EntitlementIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        entitlement = services.entitlement_create(actor=request.user, customer=customer, **v)
        return Response(EntitlementOut(entitlement).data, status=status.HTTP_201_CREATED)


class EntitlementDetail(_CustomerMixin, APIView):
    @extend_schema(operation_id="entitlements_fetch",
                   responses={200: EntitlementOut, **NOT_FOUND, **ERRORS})
    def get(self, request, customer_id, key):
        return Response(EntitlementOut(self.get_entitlement(customer_id, key)).data)

    @extend_schema(operation_id="entitlements_delete",
                   responses={200: EntitlementOut, 409: PROBLEM, **NOT_FOUND, **ERRORS})
    def delete(self, request, customer_id, key):
        entitlement = services.entitlement_delete(
            actor=request.user, entitlement=self.get_entitlement(customer_id, key))
        return Response(EntitlementOut(entitlement).data)


TIME = OpenApiParameter("time", OpenApiTypes.DATETIME, required=False,
                        description="Point in time (default now).")


class EntitlementValueView(_CustomerMixin, APIView):
    """Served without a request transaction (see urls.py): its reads are one query."""

    def handle_exception(self, exc):
        # The error handler marks the enclosing transaction for rollback; give it its own.
        with transaction.atomic():
            return super().handle_exception(exc)

    @extend_schema(operation_id="entitlements_value", parameters=[TIME],
                   responses={200: EntitlementValueOut, **NOT_FOUND, **ERRORS})
    def get(self, request, customer_id, key):
        at = _time_param(request, "time") or timezone.now()
        lookup = "external_customer_id" if self.by_external else "customer_id"
        entitlement, preloaded = selectors.value_context(key=key, at=at,
                                                         **{lookup: customer_id})
        value = selectors.entitlement_value(entitlement=entitlement, at=at,
                                            preloaded=preloaded)
        return Response(EntitlementValueOut(value).data)


class EntitlementHistoryView(_CustomerMixin, APIView):
    @extend_schema(
        operation_id="entitlements_history",
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATETIME, required=False,
                             description="Default: start of the current usage period."),
            OpenApiParameter("to", OpenApiTypes.DATETIME, required=False,
                             description="Default: now (exclusive)."),
            OpenApiParameter("window_size", str, enum=["hour", "day"], required=False),
            OpenApiParameter("window_time_zone", str, required=False,
                             description="IANA time zone of the windows (default UTC)."),
        ],
        responses={200: EntitlementHistoryOut, **NOT_FOUND, **ERRORS})
    def get(self, request, customer_id, key):
        start = _time_param(request, "from")
        end = _time_param(request, "to")
        entitlement = self.get_entitlement(customer_id, key)
        history = selectors.entitlement_history(
            entitlement=entitlement, start=start, end=end,
            window_size=request.query_params.get("window_size") or "day",
            window_time_zone=request.query_params.get("window_time_zone") or "UTC")
        return Response(EntitlementHistoryOut(history).data)


class EntitlementResetView(_CustomerMixin, APIView):
    @extend_schema(operation_id="entitlements_reset", request=EntitlementResetIn,
                   responses={201: EntitlementResetOut, 409: PROBLEM, **NOT_FOUND, **ERRORS})
    def post(self, request, customer_id, key):
        entitlement = self.get_entitlement(customer_id, key)
        data = EntitlementResetIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        reset = services.entitlement_reset(
            actor=request.user, entitlement=entitlement, effective_at=v.get("effective_at"),
            retain_anchor=v.get("retain_anchor", False),
            preserve_overage=v.get("preserve_overage"), reason=v.get("reason", ""))
        return Response(EntitlementResetOut(reset).data, status=status.HTTP_201_CREATED)


# --------------------------------------------------------------------------------------------
# Grants
# --------------------------------------------------------------------------------------------


class GrantFilter(CreatedAtFilterSet):
    customer = django_filters.CharFilter(method="filter_customer")
    customer_id = django_filters.CharFilter(method="filter_customer")
    feature = django_filters.CharFilter(method="filter_feature")
    feature_key = django_filters.CharFilter(method="filter_feature")
    feature_id = django_filters.CharFilter(method="filter_feature")

    class Meta:
        model = EntitlementGrant
        fields: list = []

    def filter_customer(self, queryset, name, value):
        return queryset.filter(Q(entitlement__customer_id=value)
                               | Q(entitlement__customer__external_customer_id=value))

    def filter_feature(self, queryset, name, value):
        return queryset.filter(Q(entitlement__feature_id=value)
                               | Q(entitlement__feature__key=value))


INCLUDE_VOIDED = OpenApiParameter("include_voided", bool, required=False)


class GrantList(generics.GenericAPIView):
    queryset = EntitlementGrant.objects.all()
    filterset_class = GrantFilter
    serializer_class = EntitlementGrantOut

    @extend_schema(operation_id="entitlement_grants_list_all", parameters=[INCLUDE_VOIDED],
                   responses={200: EntitlementGrantOut(many=True), **ERRORS})
    def get(self, request):
        qs = selectors.grant_list(include_voided=_bool_param(request, "include_voided"))
        page = self.paginate_queryset(self.filter_queryset(qs))
        return self.get_paginated_response(EntitlementGrantOut(page, many=True).data)


class EntitlementGrantListCreate(_CustomerMixin, generics.GenericAPIView):
    queryset = EntitlementGrant.objects.all()
    filterset_class = CreatedAtFilterSet
    serializer_class = EntitlementGrantOut

    @extend_schema(operation_id="entitlement_grants_list", parameters=[INCLUDE_VOIDED],
                   responses={200: EntitlementGrantOut(many=True), **NOT_FOUND, **ERRORS})
    def get(self, request, customer_id, key):
        entitlement = self.get_entitlement(customer_id, key)
        qs = selectors.grant_list(entitlement=entitlement,
                                  include_voided=_bool_param(request, "include_voided"))
        page = self.paginate_queryset(self.filter_queryset(qs))
        return self.get_paginated_response(EntitlementGrantOut(page, many=True).data)

    @extend_schema(operation_id="entitlement_grants_create", request=EntitlementGrantIn,
                   responses={201: EntitlementGrantOut, **NOT_FOUND, **ERRORS})
    def post(self, request, customer_id, key):
        entitlement = self.get_entitlement(customer_id, key)
        data = EntitlementGrantIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        grant = services.grant_create(actor=request.user, entitlement=entitlement, **v)
        return Response(EntitlementGrantOut(grant).data, status=status.HTTP_201_CREATED)


class GrantVoid(APIView):
    @extend_schema(operation_id="entitlement_grants_void", request=EntitlementGrantVoidIn,
                   responses={200: EntitlementGrantOut, 409: PROBLEM, **NOT_FOUND, **ERRORS})
    def post(self, request, grant_id):
        grant = selectors.grant_get(grant_id=grant_id)
        data = EntitlementGrantVoidIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        grant = services.grant_void(actor=request.user, grant=grant,
                                    voided_at=v.get("voided_at"), reason=v.get("reason", ""))
        return Response(EntitlementGrantOut(grant).data)
