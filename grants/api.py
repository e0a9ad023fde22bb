"""Credits (API.md §4): thin views over grants.services / grants.selectors, Orb-shaped."""

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from billing_project.api import (
    ERRORS as API_ERRORS,
)
from billing_project.api import (
    PROBLEM,
    AmountField,
    DateOrTimestampField,
    MoneyField,
    TimestampField,
)
from billing_project.filters import CreatedAtFilterSet, TimestampFilter
from grants import selectors, services
from grants.models import CreditBlock, TopUp
from ledgers.models import Customer, LedgerEntry
from ledgers.selectors import customer_get

ERRORS = {**API_ERRORS, 404: PROBLEM}  # every credit route names a customer
WRITE_ERRORS = {**ERRORS, 409: PROBLEM}


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

class FilterOut(serializers.Serializer):
    field = serializers.CharField()
    operator = serializers.CharField()
    values = serializers.ListField(child=serializers.CharField())


class CreditBlockOut(serializers.ModelSerializer):
    balance = AmountField()
    maximum_initial_balance = AmountField(source="initial_amount")
    per_unit_cost_basis = MoneyField(places=None)
    effective_date = TimestampField(source="effective_at")
    expiry_date = TimestampField(source="expires_at")
    created_at = TimestampField()
    status = serializers.SerializerMethodField()
    filters = FilterOut(many=True)
    credit_block_source = serializers.CharField(source="source")
    metadata = serializers.DictField(child=serializers.CharField())

    class Meta:
        model = CreditBlock
        fields = ["id", "balance", "currency", "effective_date", "expiry_date",
                  "per_unit_cost_basis", "maximum_initial_balance", "priority", "status",
                  "filters", "credit_block_source", "metadata", "created_at"]
        read_only_fields = fields

    @extend_schema_field({"type": "string", "description":
                          "active, pending_payment, expired, voided or depleted"})
    def get_status(self, block) -> str:
        return selectors.block_display_status(block)


class AffectedBlockOut(serializers.Serializer):
    id = serializers.CharField()
    expiry_date = TimestampField(source="expires_at")
    per_unit_cost_basis = MoneyField(places=None)
    filters = FilterOut(many=True)


class CustomerMinifiedOut(serializers.Serializer):
    id = serializers.CharField()
    external_customer_id = serializers.CharField(allow_null=True)


TYPE_FIELDS = {
    "decrement": ("event_id", "invoice_id", "price_id"),
    "expiration_change": ("new_block_expiry_date",),
    "void_initiated": ("void_reason", "void_amount", "new_block_expiry_date"),
    "void": ("void_reason", "void_amount"),
    "increment": ("created_invoices",),
}
OPTIONAL_FIELDS = {name for names in TYPE_FIELDS.values() for name in names} | {"hold_status"}


class LedgerEntryOut(serializers.ModelSerializer):
    """One Orb ledger entry; type-specific fields appear on their entry types only."""

    ledger_sequence_number = serializers.IntegerField(source="sequence_number")
    amount = AmountField()
    starting_balance = AmountField()
    ending_balance = AmountField()
    customer = CustomerMinifiedOut()
    credit_block = AffectedBlockOut(allow_null=True)
    metadata = serializers.DictField(child=serializers.CharField())
    created_at = TimestampField()
    new_block_expiry_date = TimestampField(required=False)
    void_amount = AmountField(required=False)
    created_invoices = serializers.SerializerMethodField(required=False)
    hold_status = serializers.SerializerMethodField(
        required=False, help_text="pending entries (holds): open, committed or released")

    class Meta:
        model = LedgerEntry
        fields = ["id", "ledger_sequence_number", "entry_type", "entry_status", "amount",
                  "starting_balance", "ending_balance", "currency", "customer",
                  "credit_block", "description", "metadata", "created_at", "event_id",
                  "invoice_id", "price_id", "new_block_expiry_date", "void_reason",
                  "void_amount", "created_invoices", "hold_status"]
        read_only_fields = fields

    def get_created_invoices(self, entry) -> list[dict]:
        return []

    @extend_schema_field(serializers.ChoiceField(choices=["open", "committed", "released"],
                                                 allow_null=True))
    def get_hold_status(self, entry) -> str | None:
        if entry.entry_status != "pending":
            return None
        settlement = getattr(entry, "settlement", None) if _has_settlement(entry) else None
        return settlement.outcome if settlement else "open"

    def to_representation(self, entry):
        data = super().to_representation(entry)
        keep = set(TYPE_FIELDS.get(entry.entry_type, ()))
        if entry.entry_status == "pending":
            keep.add("hold_status")
        for name in OPTIONAL_FIELDS - keep:
            data.pop(name, None)
        return data


def _has_settlement(entry) -> bool:
    try:
        entry.settlement  # noqa: B018
    except LedgerEntry.settlement.RelatedObjectDoesNotExist:
        return False
    return True


class BalanceBlockOut(CreditBlockOut):
    balance = serializers.SerializerMethodField()

    class Meta(CreditBlockOut.Meta):
        pass

    @extend_schema_field(OpenApiTypes.NUMBER)
    def get_balance(self, block):
        return AmountField().to_representation(self.context["balances"][block.pk])


class BalanceOut(serializers.Serializer):
    currency = serializers.CharField()
    balance = AmountField()
    pending = AmountField()
    available = AmountField()
    as_of = TimestampField()
    blocks = BalanceBlockOut(many=True)


class TopUpInvoiceSettingsOut(serializers.Serializer):
    auto_collection = serializers.BooleanField()
    net_terms = serializers.IntegerField(allow_null=True)
    memo = serializers.CharField(allow_null=True, required=False)
    require_successful_payment = serializers.BooleanField(required=False)


class TopUpOut(serializers.ModelSerializer):
    amount = MoneyField(places=None)
    threshold = MoneyField(places=None)
    per_unit_cost_basis = MoneyField(places=None)
    invoice_settings = TopUpInvoiceSettingsOut()
    active_from = TimestampField()
    created_at = TimestampField()

    class Meta:
        model = TopUp
        fields = ["id", "currency", "amount", "threshold", "per_unit_cost_basis",
                  "invoice_settings", "expires_after", "expires_after_unit", "active_from",
                  "created_at"]
        read_only_fields = fields


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------

class NullableStringMapField(serializers.DictField):
    """Orb metadata: {str: str}; a null value drops the key."""

    child = serializers.CharField(allow_blank=True, allow_null=True, max_length=2000)

    def to_internal_value(self, data):
        return {k: v for k, v in super().to_internal_value(data).items() if v is not None}


class FilterIn(serializers.Serializer):
    field = serializers.ChoiceField(choices=list(services.FILTER_FIELDS))
    operator = serializers.ChoiceField(choices=["includes", "excludes"])
    values = serializers.ListField(child=serializers.CharField(max_length=255),
                                   allow_empty=False)


class InvoiceSettingsIn(serializers.Serializer):
    auto_collection = serializers.BooleanField()
    net_terms = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    memo = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    require_successful_payment = serializers.BooleanField(required=False)
    mark_as_paid = serializers.BooleanField(required=False)


class _CustomerTimezone:
    def to_internal_value(self, data):
        customer = self.context.get("customer")
        if customer is not None:
            self.context["timezone"] = customer.timezone
        return super().to_internal_value(data)


REQUIRED_BY_TYPE = {
    "increment": ("amount",),
    "decrement": ("amount",),
    "expiration_change": ("target_expiry_date",),
    "void": ("block_id",),
    "amendment": ("amount", "block_id"),
}


class LedgerEntryIn(_CustomerTimezone, serializers.Serializer):
    """All of Orb's ledger entry requests; fields a type does not use are ignored."""

    entry_type = serializers.ChoiceField(choices=list(REQUIRED_BY_TYPE))
    amount = AmountField(positive=True, required=False, allow_null=True)
    currency = serializers.CharField(max_length=32, required=False, allow_null=True,
                                     allow_blank=True)
    description = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    metadata = NullableStringMapField(required=False, allow_null=True)
    entry_status = serializers.ChoiceField(choices=["committed", "pending"], required=False,
                                           help_text="decrement only: pending is a hold")
    effective_date = DateOrTimestampField(required=False, allow_null=True)
    expiry_date = DateOrTimestampField(required=False, allow_null=True)
    target_expiry_date = DateOrTimestampField(required=False)
    per_unit_cost_basis = AmountField(non_negative=True, required=False, allow_null=True)
    priority = serializers.IntegerField(required=False, allow_null=True,
                                        min_value=-(2 ** 31), max_value=2 ** 31 - 1)
    invoice_settings = InvoiceSettingsIn(required=False, allow_null=True)
    filters = FilterIn(many=True, required=False, allow_null=True)
    block_id = serializers.CharField(max_length=40, required=False, allow_null=True)
    void_reason = serializers.ChoiceField(choices=["refund"], required=False, allow_null=True)

    def validate(self, attrs):
        missing = {name: ["This field is required."]
                   for name in REQUIRED_BY_TYPE[attrs["entry_type"]]
                   if attrs.get(name) is None}
        if (attrs["entry_type"] == "expiration_change" and not attrs.get("block_id")
                and not attrs.get("expiry_date")):
            missing["block_id"] = ["block_id or expiry_date is required."]
        if missing:
            raise serializers.ValidationError(missing)
        if attrs.get("entry_status") == "pending" and attrs["entry_type"] != "decrement":
            raise serializers.ValidationError(
                {"entry_status": ["Only decrements can be pending (holds)."]})
        return attrs


class BalanceQuery(_CustomerTimezone, serializers.Serializer):
    currency = serializers.CharField(max_length=32, required=False, allow_blank=True)
    as_of = DateOrTimestampField(required=False)


class BlockListQuery(serializers.Serializer):
    currency = serializers.CharField(max_length=32, required=False, allow_blank=True)
    include_all_blocks = serializers.BooleanField(required=False, default=False)


class TopUpIn(_CustomerTimezone, serializers.Serializer):
    currency = serializers.CharField(max_length=32)
    threshold = AmountField(non_negative=True)
    amount = AmountField(positive=True)
    per_unit_cost_basis = AmountField(non_negative=True)
    invoice_settings = InvoiceSettingsIn()
    expires_after = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    expires_after_unit = serializers.ChoiceField(choices=["day", "month"], required=False,
                                                 allow_null=True)
    active_from = DateOrTimestampField(required=False, allow_null=True)

    def validate(self, attrs):
        if (attrs.get("expires_after") is None) != (attrs.get("expires_after_unit") is None):
            raise serializers.ValidationError(
                {"expires_after_unit": ["expires_after and expires_after_unit go together."]})
        return attrs


class CreditBlockFilter(CreatedAtFilterSet):
    """`created_at[...]` and Orb's `effective_date[gte|gt|lt|lte]`."""

    locals().update({
        f"effective_date[{op}]": TimestampFilter(field_name="effective_at", lookup_expr=op)
        for op in ("gte", "gt", "lt", "lte")
    })

    class Meta:
        model = CreditBlock
        fields: list = []


class TopUpFilter(CreatedAtFilterSet):
    class Meta:
        model = TopUp
        fields: list = []


class LedgerEntryFilter(CreatedAtFilterSet):
    import django_filters as _f

    entry_type = _f.ChoiceFilter(choices=LedgerEntry.EntryType.choices)
    entry_status = _f.ChoiceFilter(choices=LedgerEntry.EntryStatus.choices)
    currency = _f.CharFilter(method="filter_currency")
    minimum_amount = _f.NumberFilter(field_name="amount", lookup_expr="gte")

    class Meta:
        model = LedgerEntry
        fields = ["entry_type", "entry_status", "currency", "minimum_amount"]

    def filter_currency(self, queryset, name, value):
        customer = getattr(self.request, "credit_customer", None)
        return queryset.filter(currency=services.credit_currency(customer, value)
                               if customer else value)


# --------------------------------------------------------------------------------------------
# Views: by customer id, and the same under external_customer_id (subclasses)
# --------------------------------------------------------------------------------------------

CUSTOMER_PARAMS = {
    "customer_id": OpenApiParameter("customer_id", str, OpenApiParameter.PATH),
    "external_customer_id": OpenApiParameter("external_customer_id", str,
                                             OpenApiParameter.PATH),
}


class _CustomerScoped(generics.GenericAPIView):
    lookup_kwarg = "customer_id"
    queryset = Customer.objects.none()

    def customer(self) -> Customer:
        if not hasattr(self, "_customer"):
            key = self.kwargs[self.lookup_kwarg]
            self._customer = customer_get(**{self.lookup_kwarg: key})
            self.request.credit_customer = self._customer
        return self._customer


def _by_external_id(view, **operation_ids):
    """The same view under /customers/external_customer_id/{external_customer_id}/..."""
    schema = {method: extend_schema(operation_id=op_id) for method, op_id in
              operation_ids.items()}
    subclass = type(f"{view.__name__}ByExternalId", (view,),
                    {"lookup_kwarg": "external_customer_id", "__module__": __name__})
    return extend_schema_view(**schema)(subclass)


class CreditBlockList(_CustomerScoped):
    serializer_class = CreditBlockOut
    queryset = CreditBlock.objects.none()
    filterset_class = CreditBlockFilter

    @extend_schema(operation_id="customer_credits_list",
                   parameters=[BlockListQuery], responses={200: CreditBlockOut(many=True),
                                                            **ERRORS})
    def get(self, request, **kwargs):
        query = BlockListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        blocks = selectors.credit_block_list(customer=self.customer(), **query.validated_data)
        page = self.paginate_queryset(self.filter_queryset(blocks))
        return self.get_paginated_response(CreditBlockOut(page, many=True).data)


class CreditBalance(_CustomerScoped):
    serializer_class = BalanceOut

    @extend_schema(operation_id="customer_credits_balance", parameters=[BalanceQuery],
                   responses={200: BalanceOut, **ERRORS})
    def get(self, request, **kwargs):
        customer = self.customer()
        query = BalanceQuery(data=request.query_params, context={"customer": customer})
        query.is_valid(raise_exception=True)
        balance = selectors.credit_balance(customer=customer, **query.validated_data)
        return Response(_balance_data(balance))


def _balance_data(balance) -> dict:
    balances = {item.block.pk: item.balance for item in balance.blocks}
    return {
        "currency": balance.currency,
        "balance": AmountField().to_representation(balance.balance),
        "pending": AmountField().to_representation(balance.pending),
        "available": AmountField().to_representation(balance.available),
        "as_of": TimestampField().to_representation(balance.as_of),
        "blocks": BalanceBlockOut([item.block for item in balance.blocks], many=True,
                                  context={"balances": balances}).data,
    }


class LedgerEntryList(_CustomerScoped):
    serializer_class = LedgerEntryOut
    filterset_class = LedgerEntryFilter
    queryset = LedgerEntry.objects.none()

    def get_queryset(self) -> QuerySet[LedgerEntry]:
        if getattr(self, "swagger_fake_view", False):
            return LedgerEntry.objects.none()
        return selectors.ledger_entry_list(customer=self.customer())

    @extend_schema(operation_id="customer_credits_ledger_list",
                   responses={200: LedgerEntryOut(many=True), **ERRORS})
    def get(self, request, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(LedgerEntryOut(page, many=True).data)


class LedgerEntryCreate(_CustomerScoped):
    serializer_class = LedgerEntryOut

    @extend_schema(operation_id="customer_credits_ledger_create_entry", request=LedgerEntryIn,
                   responses={201: LedgerEntryOut, **WRITE_ERRORS})
    def post(self, request, **kwargs):
        customer = self.customer()
        data = LedgerEntryIn(data=request.data, context={"customer": customer})
        data.is_valid(raise_exception=True)
        entry = ledger_entry_create(customer=customer, actor=request.user,
                                    **data.validated_data)
        entry = selectors.ledger_entry_list(customer=customer).get(pk=entry.pk)
        return Response(LedgerEntryOut(entry).data, status=status.HTTP_201_CREATED)


def ledger_entry_create(*, customer, actor, entry_type, **fields) -> LedgerEntry:
    """Dispatch one `POST .../ledger_entry` to its service."""
    common = {"customer": customer, "actor": actor, "currency": fields.get("currency"),
              "description": fields.get("description"), "metadata": fields.get("metadata")}
    if entry_type == "increment":
        return services.credit_increment(
            **common, amount=fields["amount"], expiry_date=fields.get("expiry_date"),
            effective_date=fields.get("effective_date"),
            per_unit_cost_basis=fields.get("per_unit_cost_basis"),
            priority=fields.get("priority"), invoice_settings=fields.get("invoice_settings"),
            filters=fields.get("filters"))
    if entry_type == "decrement":
        if fields.get("entry_status") == "pending":
            return services.credit_hold_create(**common, amount=fields["amount"])
        return services.credit_decrement(**common, amount=fields["amount"])
    if entry_type == "expiration_change":
        return services.credit_block_change_expiry(
            **common, block_id=fields.get("block_id"), expiry_date=fields.get("expiry_date"),
            target_expiry_date=fields["target_expiry_date"], amount=fields.get("amount"))
    if entry_type == "void":
        return services.credit_block_void(**common, block_id=fields["block_id"],
                                          amount=fields.get("amount"),
                                          void_reason=fields.get("void_reason"))
    return services.credit_block_amend(**common, block_id=fields["block_id"],
                                       amount=fields["amount"])


class _HoldAction(_CustomerScoped):
    serializer_class = LedgerEntryOut
    action = ""

    def post(self, request, entry_id, **kwargs):
        customer = self.customer()
        service = (services.credit_hold_commit if self.action == "commit"
                   else services.credit_hold_release)
        entry = service(customer=customer, entry_id=entry_id, actor=request.user)
        entry = selectors.ledger_entry_list(customer=customer).get(pk=entry.pk)
        return Response(LedgerEntryOut(entry).data)


class LedgerEntryCommit(_HoldAction):
    action = "commit"

    @extend_schema(operation_id="customer_credits_ledger_commit", request=None,
                   responses={200: LedgerEntryOut, **WRITE_ERRORS})
    def post(self, request, entry_id, **kwargs):
        return super().post(request, entry_id, **kwargs)


class LedgerEntryRelease(_HoldAction):
    action = "release"

    @extend_schema(operation_id="customer_credits_ledger_release", request=None,
                   responses={200: LedgerEntryOut, **WRITE_ERRORS})
    def post(self, request, entry_id, **kwargs):
        return super().post(request, entry_id, **kwargs)


class TopUpListCreate(_CustomerScoped):
    serializer_class = TopUpOut
    queryset = TopUp.objects.none()
    filterset_class = TopUpFilter

    @extend_schema(operation_id="customer_credits_top_ups_list",
                   responses={200: TopUpOut(many=True), **ERRORS})
    def get(self, request, **kwargs):
        top_ups = selectors.top_up_list(customer=self.customer())
        page = self.paginate_queryset(self.filter_queryset(top_ups))
        return self.get_paginated_response(TopUpOut(page, many=True).data)

    @extend_schema(operation_id="customer_credits_top_ups_create", request=TopUpIn,
                   responses={201: TopUpOut, **WRITE_ERRORS})
    def post(self, request, **kwargs):
        customer = self.customer()
        data = TopUpIn(data=request.data, context={"customer": customer})
        data.is_valid(raise_exception=True)
        top_up = services.top_up_create(customer=customer, actor=request.user,
                                       **data.validated_data)
        return Response(TopUpOut(top_up).data, status=status.HTTP_201_CREATED)


class TopUpDetail(_CustomerScoped):
    serializer_class = TopUpOut

    @extend_schema(operation_id="customer_credits_top_ups_delete", request=None,
                   responses={204: None, **WRITE_ERRORS})
    def delete(self, request, top_up_id, **kwargs):
        services.top_up_delete(customer=self.customer(), top_up_id=top_up_id,
                              actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CreditBlockDetail(generics.GenericAPIView):
    serializer_class = CreditBlockOut
    queryset = CreditBlock.objects.none()

    @extend_schema(operation_id="credit_blocks_fetch", responses={200: CreditBlockOut,
                                                                  **ERRORS})
    def get(self, request, block_id):
        return Response(CreditBlockOut(selectors.credit_block_get(block_id=block_id)).data)


CreditBlockListByExternalId = _by_external_id(
    CreditBlockList, get="customer_credits_list_by_external_id")
CreditBalanceByExternalId = _by_external_id(
    CreditBalance, get="customer_credits_balance_by_external_id")
LedgerEntryListByExternalId = _by_external_id(
    LedgerEntryList, get="customer_credits_ledger_list_by_external_id")
LedgerEntryCreateByExternalId = _by_external_id(
    LedgerEntryCreate, post="customer_credits_ledger_create_entry_by_external_id")
LedgerEntryCommitByExternalId = _by_external_id(
    LedgerEntryCommit, post="customer_credits_ledger_commit_by_external_id")
LedgerEntryReleaseByExternalId = _by_external_id(
    LedgerEntryRelease, post="customer_credits_ledger_release_by_external_id")
TopUpListCreateByExternalId = _by_external_id(
    TopUpListCreate, get="customer_credits_top_ups_list_by_external_id",
    post="customer_credits_top_ups_create_by_external_id")
TopUpDetailByExternalId = _by_external_id(
    TopUpDetail, delete="customer_credits_top_ups_delete_by_external_id")
