"""Credits bought with invoice_settings (API.md §4): the one-off invoice, activation on
payment, credit notes for refunded (voided) credits. Through grants' hooks, end to end."""

from decimal import Decimal as D

import pytest

from grants import services as grants_services
from grants.models import CreditBlock
from invoicing import services
from invoicing.models import CreditNote, Invoice
from tests.ledgers.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def _purchase(customer, amount="100", cost_basis="0.25", currency="credits", **settings):
    entry = grants_services.credit_increment(
        customer=customer, amount=D(amount), currency=currency, actor="test",
        per_unit_cost_basis=D(cost_basis),
        invoice_settings={"auto_collection": True, "net_terms": 30, "memo": "Top-up",
                          **settings})
    return CreditBlock.objects.get(pk=entry.credit_block_id)


def test_purchase_invoice_activates_the_block_when_paid(api):
    customer = CustomerFactory(currency="EUR")
    block = _purchase(customer, amount="1000", cost_basis="0.0125")
    assert block.status == "pending_payment"
    invoice = Invoice.objects.get(credit_block_id=block.pk)
    assert invoice.kind == "credit_purchase" and invoice.status == "issued"
    assert invoice.currency == "EUR" and invoice.memo == "Top-up"
    assert invoice.total == invoice.amount_due == D("12.50")
    assert invoice.invoice_number.startswith("INV-")
    assert (invoice.due_date - invoice.issued_at).days == 30
    line = invoice.line_items.get()
    assert line.quantity == D("1000") and line.unit_amount == D("0.0125")
    body = api.get(f"/v1/invoices/{invoice.pk}").json()
    assert body["kind"] == "credit_purchase" and body["period_start"] is None
    paid = api.post(f"/v1/invoices/{invoice.pk}/mark_paid", {})
    assert paid.status_code == 200, paid.content
    block.refresh_from_db()
    assert block.status == "active"


def test_without_auto_collection_the_block_is_active_at_once():
    customer = CustomerFactory(currency="USD")
    block = _purchase(customer, currency="USD", cost_basis="1", auto_collection=False)
    assert block.status == "active"
    assert Invoice.objects.get(credit_block_id=block.pk).status == "issued"


def test_refunded_credits_get_a_credit_note_capped_at_paid():
    customer = CustomerFactory(currency="USD")
    block = _purchase(customer, amount="100", cost_basis="1", currency="USD")
    invoice = Invoice.objects.get(credit_block_id=block.pk)
    assert services.credit_purchase_refund(block_id=block.pk, credits=D("10"),
                                           actor="test") is None  # not paid yet
    services.invoice_mark_paid(invoice=invoice, actor="test")
    grants_services.credit_block_void(customer=customer, block_id=block.pk, amount=D("40"),
                                      void_reason="refund", actor="test", reason="unused")
    note = CreditNote.objects.get(invoice=invoice)
    assert note.amount == D("40.00") and note.reason == "unused"
    services.credit_purchase_refund(block_id=block.pk, credits=D("100"), actor="test")
    assert sum(n.amount for n in CreditNote.objects.filter(invoice=invoice)) == D("100")
    assert services.credit_purchase_refund(block_id=block.pk, credits=D("1"),
                                           actor="test") is None
