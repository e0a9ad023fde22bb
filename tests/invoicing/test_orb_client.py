"""The official `orb-billing` client against the live server for invoices."""

from datetime import date

import orb
import pytest

from invoicing import services
from tests.invoicing.conftest import NOV, OCT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def orb_client(live_server, api_key):
    return orb.Orb(base_url=live_server.url + "/v1", api_key=api_key.raw, max_retries=0)


def test_invoices_with_official_client(orb_client, world):
    invoice, _ = services.invoice_create_for_period(customer=world["customer"],
                                                    period_start=OCT, period_end=NOV)
    fetched = orb_client.invoices.fetch(invoice.pk)
    assert fetched.id == invoice.pk and fetched.status == "draft"
    assert fetched.customer.id == world["customer"].pk
    issued = orb_client.invoices.issue(invoice.pk)
    assert issued.status == "issued" and issued.invoice_number == "INV-000001"
    assert [i.id for i in orb_client.invoices.list(status=["issued", "paid"])] == [invoice.pk]
    assert list(orb_client.invoices.list(status=["draft"])) == []
    paid = orb_client.invoices.mark_paid(invoice.pk, payment_received_date=date(2026, 11, 3),
                                         external_id="ch_1")
    assert paid.status == "paid" and paid.amount_due == "39.02"
    voided = orb_client.invoices.void(invoice.pk)
    assert voided.status == "void"
    with pytest.raises(orb.ConflictError):
        orb_client.invoices.void(invoice.pk)
    with pytest.raises(orb.NotFoundError):
        orb_client.invoices.fetch("inv_nope")
