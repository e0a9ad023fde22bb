from django.urls import path

from invoicing import api

urlpatterns = [
    path("plans", api.PlanListCreate.as_view(), name="plan-list"),
    path("plans/<str:plan_id>", api.PlanDetail.as_view(), name="plan-detail"),
    path("pricing_rules", api.PricingRuleListCreate.as_view(), name="pricing-rule-list"),
    path("pricing_rules/<str:rule_id>", api.PricingRuleDetail.as_view(),
         name="pricing-rule-detail"),
    path("invoices", api.InvoiceList.as_view(), name="invoice-list"),
    path("invoices/preview", api.InvoicePreview.as_view(), name="invoice-preview"),
    path("invoices/<str:invoice_id>", api.InvoiceDetail.as_view(), name="invoice-detail"),
    path("invoices/<str:invoice_id>/issue", api.InvoiceIssue.as_view(), name="invoice-issue"),
    path("invoices/<str:invoice_id>/mark_paid", api.InvoiceMarkPaid.as_view(),
         name="invoice-mark-paid"),
    path("invoices/<str:invoice_id>/void", api.InvoiceVoid.as_view(), name="invoice-void"),
    path("invoices/<str:invoice_id>/refund", api.InvoiceRefund.as_view(),
         name="invoice-refund"),
    path("invoices/<str:invoice_id>/credit_notes", api.InvoiceCreditNotes.as_view(),
         name="invoice-credit-notes"),
]
