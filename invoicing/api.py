"""Plans, pricing rules, invoices and credit notes (API.md §6): thin views."""

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_project.api import (
    ERRORS,
    PROBLEM,
    AmountField,
    DateOrTimestampField,
    MoneyField,
    StringMapField,
    TimestampField,
    public_url,
)
from invoicing import selectors, services
from invoicing.filters import InvoiceFilter, PlanFilter, PricingRuleFilter
from invoicing.models import BILLING_INTERVALS, PRICING_MODELS, CreditNote, Invoice
from invoicing.pricing import minor_unit_exponent


def _money(value, currency: str) -> str | None:
    if value is None:
        return None
    return MoneyField(places=minor_unit_exponent(currency)).to_representation(value)


def _decimal_string(value) -> str | None:
    return MoneyField(places=None).to_representation(value)


# --------------------------------------------------------------------------------------------
# Plans
# --------------------------------------------------------------------------------------------


class PlanOut(serializers.Serializer):
    id = serializers.CharField()
    key = serializers.CharField()
    name = serializers.CharField()
    currency = serializers.CharField()
    billing_interval = serializers.CharField()
    created_at = TimestampField()


class PlanIn(serializers.Serializer):
    key = serializers.CharField(max_length=100)
    name = serializers.CharField(max_length=255)
    currency = serializers.CharField(max_length=32)
    billing_interval = serializers.ChoiceField(choices=BILLING_INTERVALS, default="month")


class PlanListCreate(generics.GenericAPIView):
    filterset_class = PlanFilter
    serializer_class = PlanOut
    queryset = selectors.plan_list()

    @extend_schema(operation_id="plans_list", responses={200: PlanOut(many=True), **ERRORS})
    def get(self, request):
        page = self.paginate_queryset(self.filter_queryset(selectors.plan_list()))
        return self.get_paginated_response(PlanOut(page, many=True).data)

    @extend_schema(operation_id="plans_create", request=PlanIn,
                   responses={201: PlanOut, 409: PROBLEM, **ERRORS})
    def post(self, request):
        data = PlanIn(data=request.data)
        data.is_valid(raise_exception=True)
        plan = services.plan_create(actor=request.user, **data.validated_data)
        return Response(PlanOut(plan).data, status=status.HTTP_201_CREATED)


class PlanDetail(APIView):
    @extend_schema(operation_id="plans_fetch", responses={200: PlanOut, 404: PROBLEM, **ERRORS})
    def get(self, request, plan_id):
        return Response(PlanOut(selectors.plan_get(plan_id=plan_id)).data)


# --------------------------------------------------------------------------------------------
# Pricing rules
# --------------------------------------------------------------------------------------------


class TierIn(serializers.Serializer):
    up_to = AmountField(required=False, allow_null=True, default=None)
    unit_amount = AmountField()
    flat_amount = AmountField(required=False, allow_null=True, default=None)


class TierOut(serializers.Serializer):
    up_to = serializers.CharField(allow_null=True)
    unit_amount = serializers.CharField()
    flat_amount = serializers.CharField()


class PricingRuleIn(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    meter_id = serializers.CharField(max_length=40, required=False)
    meter_slug = serializers.CharField(max_length=100, required=False)
    plan_id = serializers.CharField(max_length=40, required=False, allow_null=True)
    currency = serializers.CharField(max_length=32)
    model = serializers.ChoiceField(choices=PRICING_MODELS)
    unit_amount = AmountField(required=False, allow_null=True)
    tiers = serializers.ListField(child=TierIn(), required=False, allow_null=True,
                                  allow_empty=True)
    package_size = AmountField(required=False, allow_null=True)
    filters = StringMapField(required=False)

    def validate_tiers(self, value):
        if value is None:
            return None
        return [{k: v for k, v in tier.items() if v is not None or k == "up_to"}
                for tier in value]


class PricingRuleOut(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    meter_id = serializers.CharField()
    meter_slug = serializers.CharField()
    plan_id = serializers.CharField(allow_null=True)
    currency = serializers.CharField()
    model = serializers.CharField()
    unit_amount = MoneyField(places=None, allow_null=True)
    tiers = TierOut(many=True, allow_null=True)
    package_size = serializers.IntegerField(allow_null=True)
    filters = serializers.DictField(child=serializers.CharField())
    created_at = TimestampField()
    archived_at = TimestampField(allow_null=True)


class PricingRuleListCreate(generics.GenericAPIView):
    filterset_class = PricingRuleFilter
    serializer_class = PricingRuleOut
    queryset = selectors.pricing_rule_list()

    @extend_schema(operation_id="pricing_rules_list",
                   responses={200: PricingRuleOut(many=True), **ERRORS})
    def get(self, request):
        page = self.paginate_queryset(self.filter_queryset(selectors.pricing_rule_list()))
        return self.get_paginated_response(PricingRuleOut(page, many=True).data)

    @extend_schema(operation_id="pricing_rules_create", request=PricingRuleIn,
                   responses={201: PricingRuleOut, **ERRORS})
    def post(self, request):
        data = PricingRuleIn(data=request.data)
        data.is_valid(raise_exception=True)
        rule = services.pricing_rule_create(actor=request.user, **data.validated_data)
        return Response(PricingRuleOut(rule).data, status=status.HTTP_201_CREATED)


class PricingRuleDetail(APIView):
    @extend_schema(operation_id="pricing_rules_fetch",
                   responses={200: PricingRuleOut, 404: PROBLEM, **ERRORS})
    def get(self, request, rule_id):
        return Response(PricingRuleOut(selectors.pricing_rule_get(rule_id=rule_id)).data)

    @extend_schema(operation_id="pricing_rules_archive",
                   responses={200: PricingRuleOut, 404: PROBLEM, **ERRORS})
    def delete(self, request, rule_id):
        rule = services.pricing_rule_archive(
            actor=request.user, rule=selectors.pricing_rule_get(rule_id=rule_id))
        return Response(PricingRuleOut(rule).data)


# --------------------------------------------------------------------------------------------
# Invoices
# --------------------------------------------------------------------------------------------


class TierLineOut(serializers.Serializer):
    tier_index = serializers.IntegerField()
    first_unit = AmountField()
    up_to = AmountField(allow_null=True)
    quantity = AmountField()
    unit_amount = serializers.CharField()
    flat_amount = serializers.CharField()
    amount = serializers.CharField()


class LineItemOut(serializers.Serializer):
    id = serializers.CharField(allow_null=True)
    pricing_rule_id = serializers.CharField(allow_null=True)
    name = serializers.CharField()
    meter_id = serializers.CharField(allow_null=True)
    meter_slug = serializers.CharField(allow_null=True)
    model = serializers.CharField()
    quantity = AmountField()
    amount = serializers.CharField()
    credits_applied = serializers.CharField()
    tiers = TierLineOut(many=True, allow_null=True)


def _tier_lines(tiers) -> list[dict] | None:
    if not tiers:
        return None
    return [{"tier_index": t["tier_index"],
             "first_unit": AmountField().to_representation(t["first_unit"]),
             "up_to": AmountField().to_representation(t["up_to"]),
             "quantity": AmountField().to_representation(t["quantity"]),
             "unit_amount": _decimal_string(t["unit_amount"]),
             "flat_amount": _decimal_string(t["flat_amount"]),
             "amount": _decimal_string(t["amount"])} for t in tiers]


def line_item_data(item, currency: str) -> dict:
    return {"id": item.id, "pricing_rule_id": item.pricing_rule_id, "name": item.name,
            "meter_id": item.meter_id or None, "meter_slug": item.meter_slug or None,
            "model": item.model, "quantity": AmountField().to_representation(item.quantity),
            "amount": _money(item.amount, currency),
            "credits_applied": _money(item.credits_applied, currency),
            "tiers": _tier_lines(item.tiers)}


class CustomerRefOut(serializers.Serializer):
    id = serializers.CharField()
    external_customer_id = serializers.CharField(allow_null=True)


class InvoiceOut(serializers.Serializer):
    id = serializers.CharField()
    invoice_number = serializers.CharField(allow_null=True)
    customer = CustomerRefOut()
    kind = serializers.CharField()
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=["draft", "issued", "paid", "void"])
    period_start = TimestampField(allow_null=True)
    period_end = TimestampField(allow_null=True)
    line_items = LineItemOut(many=True)
    subtotal = serializers.CharField()
    credits_applied = serializers.CharField()
    total = serializers.CharField()
    amount_due = serializers.CharField()
    amount_paid = serializers.CharField()
    amount_refunded = serializers.CharField()
    memo = serializers.CharField(allow_null=True)
    issued_at = TimestampField(allow_null=True)
    invoice_date = TimestampField(allow_null=True)
    due_date = TimestampField(allow_null=True)
    paid_at = TimestampField(allow_null=True)
    voided_at = TimestampField(allow_null=True)
    hosted_invoice_url = serializers.CharField()
    created_at = TimestampField()

    def to_representation(self, invoice: Invoice):
        currency = invoice.currency

        def ts(value):
            return TimestampField().to_representation(value) if value else None

        return {
            "id": invoice.id, "invoice_number": invoice.invoice_number,
            "customer": {"id": invoice.customer_id,
                         "external_customer_id": invoice.customer.external_customer_id},
            "kind": invoice.kind, "currency": currency, "status": invoice.status,
            "period_start": ts(invoice.period_start), "period_end": ts(invoice.period_end),
            "line_items": [line_item_data(item, currency) for item in invoice.line_items.all()],
            "subtotal": _money(invoice.subtotal, currency),
            "credits_applied": _money(invoice.credits_applied, currency),
            "total": _money(invoice.total, currency),
            "amount_due": _money(invoice.amount_due, currency),
            "amount_paid": _money(invoice.amount_paid, currency),
            "amount_refunded": _money(invoice.amount_refunded, currency),
            "memo": invoice.memo or None,
            "issued_at": ts(invoice.issued_at), "invoice_date": ts(invoice.issued_at
                                                                   or invoice.created_at),
            "due_date": ts(invoice.due_date), "paid_at": ts(invoice.paid_at),
            "voided_at": ts(invoice.voided_at),
            "hosted_invoice_url": public_url(invoice.hosted_path),
            "created_at": ts(invoice.created_at),
        }


class PreviewIn(serializers.Serializer):
    customer_id = serializers.CharField(max_length=40, required=False)
    external_customer_id = serializers.CharField(max_length=255, required=False)
    timeframe_start = TimestampField(required=False)
    timeframe_end = TimestampField(required=False)

    def validate(self, attrs):
        if ("customer_id" in attrs) == ("external_customer_id" in attrs):
            raise serializers.ValidationError(
                {"customer_id": ["Give exactly one of customer_id or external_customer_id."]})
        return attrs


class PreviewOut(serializers.Serializer):
    customer_id = serializers.CharField()
    currency = serializers.CharField()
    period_start = TimestampField()
    period_end = TimestampField()
    line_items = LineItemOut(many=True)
    subtotal = serializers.CharField()
    credits_applied = serializers.CharField()
    total = serializers.CharField()
    amount_due = serializers.CharField()


def preview_data(draft) -> dict:
    currency = draft.currency
    lines = []
    for line in draft.lines:
        lines.append({
            "id": None, "pricing_rule_id": line.rule.id, "name": line.rule.name,
            "meter_id": line.rule.meter_id, "meter_slug": line.rule.meter_slug,
            "model": line.rule.model, "quantity": AmountField().to_representation(line.quantity),
            "amount": _money(line.amount, currency),
            "credits_applied": _money(line.credits_applied, currency),
            "tiers": _tier_lines([t.as_dict() for t in line.result.tiers])})
    ts = TimestampField().to_representation
    return {"customer_id": draft.customer.pk, "currency": currency,
            "period_start": ts(draft.period_start), "period_end": ts(draft.period_end),
            "line_items": lines, "subtotal": _money(draft.subtotal, currency),
            "credits_applied": _money(draft.credits_applied, currency),
            "total": _money(draft.amount_due, currency),
            "amount_due": _money(draft.amount_due, currency)}


class InvoicePreview(APIView):
    required_scope = "read"

    @extend_schema(operation_id="invoices_preview", request=PreviewIn,
                   responses={200: PreviewOut, 404: PROBLEM, **ERRORS})
    def post(self, request):
        from ledgers.selectors import customer_get

        data = PreviewIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        customer = customer_get(customer_id=values.get("customer_id"),
                                external_customer_id=values.get("external_customer_id"))
        draft = selectors.invoice_preview(customer=customer,
                                          start=values.get("timeframe_start"),
                                          end=values.get("timeframe_end"))
        return Response(preview_data(draft))


class InvoiceList(generics.GenericAPIView):
    filterset_class = InvoiceFilter
    serializer_class = InvoiceOut
    queryset = selectors.invoice_list()

    @extend_schema(operation_id="invoices_list", responses={200: InvoiceOut(many=True), **ERRORS})
    def get(self, request):
        page = self.paginate_queryset(self.filter_queryset(selectors.invoice_list()))
        return self.get_paginated_response(InvoiceOut(page, many=True).data)


class InvoiceDetail(APIView):
    @extend_schema(operation_id="invoices_fetch",
                   responses={200: InvoiceOut, 404: PROBLEM, **ERRORS})
    def get(self, request, invoice_id):
        return Response(InvoiceOut(selectors.invoice_get(invoice_id=invoice_id)).data)


class InvoiceIssue(APIView):
    @extend_schema(operation_id="invoices_issue", request=None,
                   responses={200: InvoiceOut, 404: PROBLEM, 409: PROBLEM, **ERRORS})
    def post(self, request, invoice_id):
        invoice = services.invoice_issue(invoice=selectors.invoice_get(invoice_id=invoice_id),
                                         actor=request.user)
        return Response(InvoiceOut(invoice).data)


class MarkPaidIn(serializers.Serializer):
    payment_received_date = DateOrTimestampField(required=False, allow_null=True)
    external_id = serializers.CharField(max_length=255, required=False, allow_null=True,
                                        allow_blank=True)
    notes = serializers.CharField(required=False, allow_null=True, allow_blank=True)


class InvoiceMarkPaid(APIView):
    @extend_schema(operation_id="invoices_mark_paid", request=MarkPaidIn,
                   responses={200: InvoiceOut, 404: PROBLEM, 409: PROBLEM, **ERRORS})
    def post(self, request, invoice_id):
        invoice = selectors.invoice_get(invoice_id=invoice_id)
        data = MarkPaidIn(data=request.data, context={"timezone": invoice.customer.timezone})
        data.is_valid(raise_exception=True)
        invoice = services.invoice_mark_paid(invoice=invoice, actor=request.user,
                                             **data.validated_data)
        return Response(InvoiceOut(invoice).data)


class VoidIn(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class InvoiceVoid(APIView):
    @extend_schema(operation_id="invoices_void", request=VoidIn,
                   responses={200: InvoiceOut, 404: PROBLEM, 409: PROBLEM, **ERRORS})
    def post(self, request, invoice_id):
        data = VoidIn(data=request.data)
        data.is_valid(raise_exception=True)
        invoice = services.invoice_void(invoice=selectors.invoice_get(invoice_id=invoice_id),
                                        actor=request.user, **data.validated_data)
        return Response(InvoiceOut(invoice).data)


class RefundIn(serializers.Serializer):
    amount = AmountField(positive=True, required=False, allow_null=True)
    reason = serializers.CharField()


class CreditNoteOut(serializers.Serializer):
    id = serializers.CharField()
    invoice_id = serializers.CharField()
    amount = serializers.CharField()
    currency = serializers.CharField()
    reason = serializers.CharField()
    created_at = TimestampField()

    def to_representation(self, note: CreditNote):
        currency = note.invoice.currency
        return {"id": note.id, "invoice_id": note.invoice_id,
                "amount": _money(note.amount, currency), "currency": currency,
                "reason": note.reason,
                "created_at": TimestampField().to_representation(note.created_at)}


class InvoiceRefund(APIView):
    @extend_schema(operation_id="invoices_refund", request=RefundIn,
                   responses={201: CreditNoteOut, 404: PROBLEM, 409: PROBLEM, **ERRORS})
    def post(self, request, invoice_id):
        invoice = selectors.invoice_get(invoice_id=invoice_id)
        data = RefundIn(data=request.data)
        data.is_valid(raise_exception=True)
        note = services.invoice_refund(invoice=invoice, actor=request.user,
                                       **data.validated_data)
        return Response(CreditNoteOut(note).data, status=status.HTTP_201_CREATED)


class InvoiceCreditNotes(generics.GenericAPIView):
    serializer_class = CreditNoteOut
    queryset = CreditNote.objects.none()

    @extend_schema(operation_id="invoices_credit_notes_list",
                   responses={200: CreditNoteOut(many=True), 404: PROBLEM, **ERRORS})
    def get(self, request, invoice_id):
        invoice = selectors.invoice_get(invoice_id=invoice_id)
        page = self.paginate_queryset(
            selectors.credit_note_list(invoice=invoice).select_related("invoice"))
        return self.get_paginated_response(CreditNoteOut(page, many=True).data)
