"""The hosted invoice page: printable HTML served without an API key behind a secret URL."""

import secrets

from django.conf import settings
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET

from invoicing import pricing
from invoicing.models import Invoice


def _money(value, currency):
    return pricing.format_money(value, currency)


@require_GET
def hosted_invoice(request, invoice_id: str, token: str):
    invoice = (Invoice.objects.select_related("customer", "plan")
               .prefetch_related("line_items", "credit_notes").filter(pk=invoice_id).first())
    if invoice is None or not secrets.compare_digest(invoice.hosted_token, token):
        raise Http404("No such invoice.")
    currency = invoice.currency
    lines = []
    for item in invoice.line_items.all():
        tiers = [{**tier, "amount": _money(tier["amount"], currency)} for tier in item.tiers or []]
        lines.append({"item": item, "quantity": item.quantity.normalize(),
                      "amount": _money(item.amount, currency),
                      "credits_applied": _money(item.credits_applied, currency), "tiers": tiers})
    context = {
        "invoice": invoice, "customer": invoice.customer, "lines": lines,
        "seller": {"name": getattr(settings, "BILLING_SELLER_NAME", "") or "Usage Billing",
                   "address": getattr(settings, "BILLING_SELLER_ADDRESS", "")},
        "subtotal": _money(invoice.subtotal, currency),
        "credits_applied": _money(invoice.credits_applied, currency),
        "total": _money(invoice.total, currency),
        "amount_due": _money(invoice.amount_due, currency),
        "amount_paid": _money(invoice.amount_paid, currency),
        "amount_refunded": _money(invoice.amount_refunded, currency),
        "credit_notes": [{"note": n, "amount": _money(n.amount, currency)}
                         for n in invoice.credit_notes.all()],
    }
    response = render(request, "invoicing/hosted_invoice.html", context)
    response["X-Robots-Tag"] = "noindex"
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "private, no-store"
    return response
