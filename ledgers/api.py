"""Customers (API.md §1): thin views over ledgers.services / ledgers.selectors."""

from django.apps import apps
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_project.api import (
    ERRORS,
    PROBLEM,
    DateOrTimestampField,
    StringMapField,
    TimestampField,
    validate_timezone_name,
)
from billing_project.filters import CreatedAtFilterSet
from ledgers import selectors, services
from ledgers.models import Customer


def validate_plan_id(value):
    if value is None:
        return None
    try:
        plan_model = apps.get_model("invoicing", "Plan")
    except LookupError:
        plan_model = None
    if plan_model is None or not plan_model.objects.filter(pk=value).exists():
        raise serializers.ValidationError(f"No plan '{value}'.", code="unknown_plan")
    return value


class CustomerOut(serializers.ModelSerializer):
    created_at = TimestampField()
    billing_anchor = TimestampField()

    class Meta:
        model = Customer
        fields = ["id", "external_customer_id", "name", "email", "currency", "timezone",
                  "metadata", "allow_negative_balance", "plan_id", "billing_anchor",
                  "created_at"]
        read_only_fields = fields


class CustomerUpdateIn(serializers.Serializer):
    """Unknown fields are ignored (Orb clients send optional fields we do not model)."""

    name = serializers.CharField(max_length=255)
    email = serializers.EmailField(max_length=320)
    metadata = StringMapField(required=False)
    timezone = serializers.CharField(max_length=64, required=False,
                                     validators=[validate_timezone_name])
    allow_negative_balance = serializers.BooleanField(required=False)
    plan_id = serializers.CharField(max_length=40, required=False, allow_null=True,
                                    validators=[validate_plan_id])
    external_customer_id = serializers.CharField(max_length=255, required=False,
                                                 allow_null=True)

    def validate_external_customer_id(self, value):
        if value is not None and not value.strip():
            raise serializers.ValidationError("Must not be blank.")
        return value


class CustomerCreateIn(CustomerUpdateIn):
    currency = serializers.CharField(max_length=32, required=False, allow_null=True)
    billing_anchor = DateOrTimestampField(required=False, allow_null=True)

    def to_internal_value(self, data):
        if isinstance(data, dict) and isinstance(data.get("timezone"), str):
            self.context["timezone"] = data["timezone"]
        return super().to_internal_value(data)

    def validate_timezone(self, value):
        self.context["timezone"] = value
        return value


class CustomerFilter(CreatedAtFilterSet):
    class Meta:
        model = Customer
        fields = ["external_customer_id"]


class CustomerListCreate(generics.GenericAPIView):
    queryset = Customer.objects.all()
    filterset_class = CustomerFilter
    serializer_class = CustomerOut

    @extend_schema(operation_id="customers_list", responses={200: CustomerOut(many=True),
                                                             **ERRORS})
    def get(self, request):
        page = self.paginate_queryset(self.filter_queryset(selectors.customer_list()))
        return self.get_paginated_response(CustomerOut(page, many=True).data)

    @extend_schema(operation_id="customers_create", request=CustomerCreateIn,
                   responses={201: CustomerOut, 409: PROBLEM, **ERRORS})
    def post(self, request):
        data = CustomerCreateIn(data=request.data)
        data.is_valid(raise_exception=True)
        customer = services.customer_create(actor=request.user, **data.validated_data)
        return Response(CustomerOut(customer).data, status=status.HTTP_201_CREATED)


class _CustomerDetail(APIView):
    lookup: str

    def get_customer(self, key) -> Customer:
        return selectors.customer_get(**{self.lookup: key})

    def get(self, request, key):
        return Response(CustomerOut(self.get_customer(key)).data)

    def put(self, request, key):
        customer = self.get_customer(key)
        data = CustomerUpdateIn(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        customer = services.customer_update(actor=request.user, customer=customer,
                                            **data.validated_data)
        return Response(CustomerOut(customer).data)


class CustomerDetail(_CustomerDetail):
    lookup = "customer_id"

    @extend_schema(operation_id="customers_fetch", responses={200: CustomerOut, 404: PROBLEM,
                                                              **ERRORS})
    def get(self, request, key):
        return super().get(request, key)

    @extend_schema(operation_id="customers_update", request=CustomerUpdateIn,
                   responses={200: CustomerOut, 404: PROBLEM, 409: PROBLEM, **ERRORS})
    def put(self, request, key):
        return super().put(request, key)


class CustomerByExternalId(_CustomerDetail):
    lookup = "external_customer_id"

    @extend_schema(operation_id="customers_fetch_by_external_id",
                   responses={200: CustomerOut, 404: PROBLEM, **ERRORS})
    def get(self, request, key):
        return super().get(request, key)

    @extend_schema(operation_id="customers_update_by_external_id", request=CustomerUpdateIn,
                   responses={200: CustomerOut, 404: PROBLEM, 409: PROBLEM, **ERRORS})
    def put(self, request, key):
        return super().put(request, key)
