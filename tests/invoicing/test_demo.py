from io import StringIO

import pytest

from invoicing import demo
from invoicing.models import CreditNote, Invoice

pytestmark = pytest.mark.django_db


def test_demo_is_complete_and_idempotent():
    out = StringIO()
    demo.load(stdout=out)
    assert "Demo invoices created: 4" in out.getvalue()
    statuses = sorted(Invoice.objects.values_list("status", flat=True))
    assert statuses == ["draft", "issued", "paid", "paid"]
    assert CreditNote.objects.count() == 1
    issued = Invoice.objects.exclude(status="draft")
    assert all(invoice.subtotal > 0 for invoice in issued)
    assert all(len(invoice.line_items.all()) == 3 for invoice in issued)
    demo.load(stdout=StringIO())
    assert Invoice.objects.count() == 4 and CreditNote.objects.count() == 1
