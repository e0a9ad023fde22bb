"""Events, backfills, meters and usage (API.md §2, §3): thin views over services/selectors."""

from django.db.models import Count
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
)
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_project.api import ERRORS, PROBLEM, AmountField, TimestampField, format_timestamp
from billing_project.errors import InvalidInput, NotFound
from billing_project.filters import CreatedAtFilterSet
from ledgers.selectors import customer_get
from metering import selectors, services
from metering.models import Backfill, Meter

# --- ingestion -------------------------------------------------------------------------------

class EventIn(serializers.Serializer):
    """Documentation of one event (ingestion validates without serializers, for speed)."""

    idempotency_key = serializers.CharField(max_length=256)
    event_name = serializers.CharField(max_length=255)
    timestamp = TimestampField()
    properties = serializers.DictField(required=False)
    customer_id = serializers.CharField(required=False)
    external_customer_id = serializers.CharField(required=False)


class IngestIn(serializers.Serializer):
    events = EventIn(many=True)


class ValidationFailedOut(serializers.Serializer):
    idempotency_key = serializers.CharField(allow_null=True)
    validation_errors = serializers.ListField(child=serializers.CharField())


class IngestDebugOut(serializers.Serializer):
    duplicate = serializers.ListField(child=serializers.CharField())
    ingested = serializers.ListField(child=serializers.CharField())


class IngestOut(serializers.Serializer):
    validation_failed = ValidationFailedOut(many=True)
    debug = IngestDebugOut(required=False)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


class IngestView(APIView):
    required_scope = "ingest"

    @extend_schema(
        operation_id="events_ingest", request=IngestIn,
        parameters=[OpenApiParameter("debug", OpenApiTypes.BOOL, required=False),
                    OpenApiParameter("backfill_id", OpenApiTypes.STR, required=False)],
        responses={200: IngestOut, 400: IngestOut, 401: PROBLEM, 403: PROBLEM, 404: PROBLEM,
                   409: PROBLEM, 413: PROBLEM})
    def post(self, request):
        body = request.data
        if not isinstance(body, dict) or "events" not in body:
            raise InvalidInput("The body must be an object with an 'events' list.",
                               code="invalid_events", field="events")
        result = services.events_ingest(
            events=body["events"], backfill_id=request.query_params.get("backfill_id") or None,
            actor=request.user)
        data = {"validation_failed": result.validation_failed}
        if _truthy(request.query_params.get("debug")):
            data["debug"] = {"duplicate": result.duplicate, "ingested": result.ingested}
        return Response(data, status=status.HTTP_400_BAD_REQUEST if result.validation_failed
                        else status.HTTP_200_OK)


# --- events ----------------------------------------------------------------------------------

class EventOut(serializers.Serializer):
    id = serializers.CharField(source="event_id")
    customer_id = serializers.CharField(allow_null=True)
    external_customer_id = serializers.CharField(allow_null=True)
    event_name = serializers.CharField()
    properties = serializers.DictField()
    timestamp = TimestampField()
    deprecated = serializers.BooleanField()

    def to_representation(self, instance):
        return {"id": instance.event_id, "customer_id": instance.customer_id,
                "external_customer_id": instance.external_customer_id,
                "event_name": instance.event_name, "properties": instance.properties,
                "timestamp": format_timestamp(instance.timestamp),
                "deprecated": instance.deprecated}


class EventAmendIn(serializers.Serializer):
    event_name = serializers.CharField(max_length=255)
    properties = serializers.JSONField()
    timestamp = TimestampField()
    customer_id = serializers.CharField(required=False, allow_null=True)
    external_customer_id = serializers.CharField(required=False, allow_null=True)


class EventAmendOut(serializers.Serializer):
    amended = serializers.CharField()


class EventDeprecateOut(serializers.Serializer):
    deprecated = serializers.CharField()


class EventAmendView(APIView):
    @extend_schema(operation_id="events_update", request=EventAmendIn,
                   responses={200: EventAmendOut, 404: PROBLEM, 409: PROBLEM, **ERRORS})
    def put(self, request, event_id):
        data = EventAmendIn(data=request.data)
        data.is_valid(raise_exception=True)
        event = services.event_amend(event_id=event_id, actor=request.user,
                                     **data.validated_data)
        return Response({"amended": event.event_id})


class EventDeprecateView(APIView):
    @extend_schema(operation_id="events_deprecate", request=None,
                   responses={200: EventDeprecateOut, 404: PROBLEM, 409: PROBLEM, **ERRORS})
    def put(self, request, event_id):
        event = services.event_deprecate(event_id=event_id, actor=request.user)
        return Response({"deprecated": event.event_id})


class EventSearchIn(serializers.Serializer):
    event_ids = serializers.ListField(child=serializers.CharField(max_length=256),
                                      max_length=1000)
    timeframe_start = TimestampField(required=False, allow_null=True)
    timeframe_end = TimestampField(required=False, allow_null=True)


class EventSearchOut(serializers.Serializer):
    data = EventOut(many=True)


class EventSearchView(APIView):
    required_scope = "read"

    @extend_schema(operation_id="events_search", request=EventSearchIn,
                   responses={200: EventSearchOut, **ERRORS})
    def post(self, request):
        data = EventSearchIn(data=request.data)
        data.is_valid(raise_exception=True)
        events = selectors.event_search(**data.validated_data)
        return Response({"data": [EventOut().to_representation(e) for e in events]})


# --- backfills -------------------------------------------------------------------------------

class BackfillOut(serializers.ModelSerializer):
    created_at = TimestampField()
    timeframe_start = TimestampField()
    timeframe_end = TimestampField()
    close_time = TimestampField(allow_null=True)
    reverted_at = TimestampField(allow_null=True)
    events_ingested = serializers.SerializerMethodField()
    deprecation_filter = serializers.SerializerMethodField()

    class Meta:
        model = Backfill
        fields = ["id", "status", "created_at", "timeframe_start", "timeframe_end",
                  "customer_id", "replace_existing_events", "close_time", "reverted_at",
                  "events_ingested", "deprecation_filter"]
        read_only_fields = fields

    def get_events_ingested(self, obj) -> int:
        count = getattr(obj, "events_count", None)
        return count if count is not None else obj.events.count()

    def get_deprecation_filter(self, obj) -> str | None:
        return None


class BackfillIn(serializers.Serializer):
    timeframe_start = TimestampField()
    timeframe_end = TimestampField()
    customer_id = serializers.CharField(required=False, allow_null=True)
    external_customer_id = serializers.CharField(required=False, allow_null=True)
    replace_existing_events = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs):
        if attrs.get("customer_id") and attrs.get("external_customer_id"):
            raise serializers.ValidationError(
                {"customer_id": "Give at most one of customer_id and external_customer_id."})
        return attrs


class BackfillFilter(CreatedAtFilterSet):
    class Meta:
        model = Backfill
        fields = []


def _backfills():
    return Backfill.objects.annotate(events_count=Count("events"))


class BackfillListCreate(generics.GenericAPIView):
    queryset = Backfill.objects.all()
    filterset_class = BackfillFilter
    serializer_class = BackfillOut

    @extend_schema(operation_id="events_backfills_list",
                   responses={200: BackfillOut(many=True), **ERRORS})
    def get(self, request):
        page = self.paginate_queryset(self.filter_queryset(_backfills()))
        return self.get_paginated_response(BackfillOut(page, many=True).data)

    @extend_schema(operation_id="events_backfills_create", request=BackfillIn,
                   responses={201: BackfillOut, 404: PROBLEM, **ERRORS})
    def post(self, request):
        data = BackfillIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        customer = None
        if values.get("customer_id"):
            customer = customer_get(customer_id=values["customer_id"])
        elif values.get("external_customer_id"):
            customer = customer_get(external_customer_id=values["external_customer_id"])
        backfill = services.backfill_create(
            timeframe_start=values["timeframe_start"], timeframe_end=values["timeframe_end"],
            customer=customer, replace_existing_events=values["replace_existing_events"],
            actor=request.user)
        return Response(BackfillOut(backfill).data, status=status.HTTP_201_CREATED)


def _backfill_or_404(backfill_id):
    backfill = _backfills().filter(pk=backfill_id).first()
    if backfill is None:
        raise NotFound(f"No backfill '{backfill_id}'.", code="backfill_not_found")
    return backfill


class BackfillDetail(APIView):
    @extend_schema(operation_id="events_backfills_fetch",
                   responses={200: BackfillOut, 404: PROBLEM, **ERRORS})
    def get(self, request, backfill_id):
        return Response(BackfillOut(_backfill_or_404(backfill_id)).data)


class BackfillClose(APIView):
    @extend_schema(operation_id="events_backfills_close", request=None,
                   responses={200: BackfillOut, 404: PROBLEM, 409: PROBLEM, **ERRORS})
    def post(self, request, backfill_id):
        services.backfill_close(backfill_id=backfill_id, actor=request.user)
        return Response(BackfillOut(_backfill_or_404(backfill_id)).data)


class BackfillRevert(APIView):
    @extend_schema(operation_id="events_backfills_revert", request=None,
                   responses={200: BackfillOut, 404: PROBLEM, 409: PROBLEM, **ERRORS})
    def post(self, request, backfill_id):
        services.backfill_revert(backfill_id=backfill_id, actor=request.user)
        return Response(BackfillOut(_backfill_or_404(backfill_id)).data)


# --- meters ----------------------------------------------------------------------------------

class MeterOut(serializers.ModelSerializer):
    created_at = TimestampField()
    archived_at = TimestampField(allow_null=True)
    group_by = serializers.DictField(child=serializers.CharField())
    skipped_events = serializers.SerializerMethodField()

    class Meta:
        model = Meter
        fields = ["id", "slug", "name", "description", "event_name", "aggregation",
                  "value_property", "group_by", "skipped_events", "created_at", "archived_at"]
        read_only_fields = fields

    def get_skipped_events(self, obj) -> int:
        skipped = self.context.get("skipped")
        if skipped is None:
            skipped = selectors.meter_skipped_events([obj])
        return skipped.get(obj.pk, 0)


class MeterIn(serializers.Serializer):
    slug = serializers.CharField(max_length=100)
    name = serializers.CharField(max_length=255)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    event_name = serializers.CharField(max_length=255)
    aggregation = serializers.ChoiceField(choices=Meter.Aggregation.values)
    value_property = serializers.CharField(max_length=255, required=False, allow_null=True)
    group_by = serializers.DictField(child=serializers.CharField(max_length=255),
                                     required=False, default=dict)


class MeterFilter(CreatedAtFilterSet):
    class Meta:
        model = Meter
        fields = ["event_name", "slug"]


class MeterListCreate(generics.GenericAPIView):
    queryset = Meter.objects.all()
    filterset_class = MeterFilter
    serializer_class = MeterOut

    @extend_schema(operation_id="meters_list", responses={200: MeterOut(many=True), **ERRORS})
    def get(self, request):
        page = self.paginate_queryset(self.filter_queryset(selectors.meter_list()))
        skipped = selectors.meter_skipped_events(page)
        return self.get_paginated_response(
            MeterOut(page, many=True, context={"skipped": skipped}).data)

    @extend_schema(operation_id="meters_create", request=MeterIn,
                   responses={201: MeterOut, 409: PROBLEM, **ERRORS})
    def post(self, request):
        data = MeterIn(data=request.data)
        data.is_valid(raise_exception=True)
        meter = services.meter_create(actor=request.user, **data.validated_data)
        return Response(MeterOut(meter).data, status=status.HTTP_201_CREATED)


class MeterDetail(APIView):
    @extend_schema(operation_id="meters_fetch", responses={200: MeterOut, 404: PROBLEM,
                                                           **ERRORS})
    def get(self, request, id_or_slug):
        return Response(MeterOut(selectors.meter_get(id_or_slug)).data)

    @extend_schema(operation_id="meters_archive", responses={200: MeterOut, 404: PROBLEM,
                                                             **ERRORS})
    def delete(self, request, id_or_slug):
        meter = services.meter_archive(meter=selectors.meter_get(id_or_slug),
                                       actor=request.user)
        return Response(MeterOut(meter).data)


class UsageRowOut(serializers.Serializer):
    window_start = TimestampField()
    window_end = TimestampField()
    value = AmountField(allow_null=True)
    customer_id = serializers.CharField(allow_null=True)
    group_by = serializers.DictField(child=serializers.CharField(allow_null=True))


class UsageOut(serializers.Serializer):
    data = UsageRowOut(many=True)


class UsageQueryIn(serializers.Serializer):
    customer_id = serializers.CharField(required=False)
    external_customer_id = serializers.CharField(required=False)
    timeframe_start = TimestampField()
    timeframe_end = TimestampField()
    window_size = serializers.ChoiceField(choices=selectors.WINDOW_SIZES, required=False,
                                          allow_null=True, allow_blank=True)
    window_time_zone = serializers.CharField(required=False, default="UTC")


class MeterUsage(APIView):
    @extend_schema(
        operation_id="meters_usage",
        parameters=[UsageQueryIn,
                    OpenApiParameter("group_by", OpenApiTypes.STR, many=True, required=False),
                    OpenApiParameter("filter[KEY]", OpenApiTypes.STR, required=False,
                                     description="Only events whose group KEY equals the value")],
        responses={200: UsageOut, 404: PROBLEM, **ERRORS})
    def get(self, request, id_or_slug):
        meter = selectors.meter_get(id_or_slug)
        query = UsageQueryIn(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        values = query.validated_data
        if values.get("customer_id") and values.get("external_customer_id"):
            raise InvalidInput("Give at most one of customer_id and external_customer_id.",
                               code="invalid_customer", field="customer_id")
        customer = None
        if values.get("customer_id"):
            customer = customer_get(customer_id=values["customer_id"])
        elif values.get("external_customer_id"):
            customer = customer_get(external_customer_id=values["external_customer_id"])
        group_by = [name for value in request.query_params.getlist("group_by")
                    for name in value.split(",") if name]
        filters = {key[len("filter["):-1]: value for key, value in request.query_params.items()
                   if key.startswith("filter[") and key.endswith("]")}
        rows = selectors.usage(
            meter=meter, customer=customer, start=values["timeframe_start"],
            end=values["timeframe_end"], window=values.get("window_size") or None,
            window_time_zone=values.get("window_time_zone") or "UTC", group_by=group_by,
            filters=filters)
        return Response({"data": [_usage_row(row) for row in rows]})


def _usage_row(row: selectors.UsageRow) -> dict:
    return {"window_start": format_timestamp(row.window_start),
            "window_end": format_timestamp(row.window_end), "value": row.value,
            "customer_id": row.customer_id, "group_by": row.group_by}

