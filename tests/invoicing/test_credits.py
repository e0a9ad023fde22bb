"""Usage paid from credits: settle_usage, invoices applying those credits once, void."""

import threading
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.db import connection
from django.db.models import Sum

from grants import services as grants_services
from grants.selectors import credit_balance
from invoicing import billing, services
from invoicing.models import Invoice, UsageSettlement
from ledgers.models import Ledger, LedgerEntry
from tests.invoicing.conftest import NOV, OCT

pytestmark = pytest.mark.django_db


def _decrements(customer, **filters):
    return LedgerEntry.objects.filter(customer=customer, entry_type="decrement", **filters)


def _total(queryset):
    return queryset.aggregate(s=Sum("amount"))["s"] or D(0)


def _block(customer, amount, currency="USD", **kwargs):
    return grants_services.credit_increment(customer=customer, amount=D(amount),
                                            currency=currency, actor="test", **kwargs)


def test_settle_usage_burns_blocks_once_with_price_id(world):
    customer = world["customer"]
    _block(customer, "10")
    as_of = OCT + timedelta(days=10)
    first = billing.settle_usage(as_of=as_of)
    assert first == {"customers": 1, "checkpoints": 3}  # the third rule: cost, nothing paid
    per_unit, graduated, _ = world["rules"]
    assert _total(_decrements(customer, price_id=per_unit.pk)) == D("1.52")
    assert _total(_decrements(customer, price_id=graduated.pk)) == D("8.48")
    entry = _decrements(customer, price_id=per_unit.pk).get()
    assert entry.event_id is not None  # covers exactly one event
    assert billing.settle_usage(as_of=as_of + timedelta(hours=1)) == {"customers": 1,
                                                                      "checkpoints": 0}
    assert _decrements(customer).count() == 2
    assert credit_balance(customer=customer, currency="USD").balance == 0


def test_balance_read_includes_unsettled_usage(world):
    customer = world["customer"]
    _block(customer, "100")
    # The current period (containing now) has no usage in the fixture; add some.
    from django.utils import timezone

    from tests.invoicing.factories import ingest

    now = timezone.now()
    # October (39.02) is not invoiced yet; the current period has the fixture's 1000 calls on
    # Nov 1 (15.00) and 200 more now (3.00). The read is exact whichever jobs ran.
    ingest(customer, world["meters"][0], 200, now - timedelta(minutes=5))
    assert credit_balance(customer=customer, currency="USD").balance == D("42.98")
    assert not _decrements(customer).exists()
    billing.settle_usage(as_of=timezone.now())
    assert _total(_decrements(customer)) == D("18.00")
    assert credit_balance(customer=customer, currency="USD").balance == D("42.98")
    billing.close_billing_periods(as_of=timezone.now(), grace=timedelta(days=1))
    assert _total(_decrements(customer)) == D("57.02")
    assert Invoice.objects.get(customer=customer).credits_applied == D("39.02")
    assert credit_balance(customer=customer, currency="USD").balance == D("42.98")


def test_invoice_applies_settled_credits_without_double_counting(api, world):
    customer = world["customer"]
    _block(customer, "10")
    billing.settle_usage(as_of=OCT + timedelta(days=10))
    preview = api.post("/v1/invoices/preview", {
        "customer_id": customer.pk, "timeframe_start": "2026-10-01T00:00:00Z",
        "timeframe_end": "2026-11-01T00:00:00Z"}).json()
    assert preview["credits_applied"] == "10.00" and preview["amount_due"] == "29.02"
    # Credits bought later pay later usage, not usage already billed to the invoice.
    _block(customer, "5")
    invoice, _ = services.invoice_create_for_period(customer=customer, period_start=OCT,
                                                    period_end=NOV)
    assert invoice.credits_applied == D("10.00")
    assert invoice.amount_due == D("29.02")
    # Usage arriving within the grace period is priced at issue and paid by the new block.
    from tests.invoicing.factories import ingest

    ingest(customer, world["meters"][2], 10, NOV - timedelta(minutes=30))  # 16 seats: +20.00
    services.invoice_issue(invoice=invoice, actor="test")
    invoice.refresh_from_db()
    assert invoice.subtotal == D("59.02")
    assert invoice.credits_applied == D("15.00") == _total(_decrements(customer))
    body = api.get(f"/v1/invoices/{invoice.pk}").json()
    assert body["credits_applied"] == "15.00" and body["amount_due"] == "44.02"
    assert sum(D(line["credits_applied"]) for line in body["line_items"]) == D("15")

    voided = api.post(f"/v1/invoices/{invoice.pk}/void", {"reason": "wrong plan"})
    assert voided.status_code == 200, voided.content
    amendments = LedgerEntry.objects.filter(customer=customer, entry_type="amendment")
    assert _total(amendments) == D("15")
    assert Ledger.objects.get(customer=customer, currency="USD").balance == D("15")
    # The read also burns the current period's unsettled usage (1000 calls on Nov 1: 15.00).
    assert credit_balance(customer=customer, currency="USD").balance == D("0")


def test_preview_simulates_credits_without_writing(api, world):
    customer = world["customer"]
    _block(customer, "50")
    preview = api.post("/v1/invoices/preview", {
        "customer_id": customer.pk, "timeframe_start": "2026-10-01T00:00:00Z",
        "timeframe_end": "2026-11-01T00:00:00Z"}).json()
    assert preview["credits_applied"] == "39.02" and preview["amount_due"] == "0.00"
    assert not _decrements(customer).exists()


def test_customer_without_credits_is_not_settled(world):
    assert billing.settle_usage(as_of=OCT + timedelta(days=10)) == {"customers": 0,
                                                                    "checkpoints": 0}
    _block(world["customer"], "10", currency="EUR")  # other currency: still nothing to burn
    assert billing.settle_usage(as_of=OCT + timedelta(days=10))["checkpoints"] == 0
    assert not UsageSettlement.objects.exists()


def test_usage_going_down_returns_credits(api, world):
    customer = world["customer"]
    _block(customer, "100")
    from tests.invoicing.factories import ingest

    key = ingest(customer, world["meters"][0], 1000, OCT + timedelta(days=5))  # +15.00
    billing.settle_usage(as_of=OCT + timedelta(days=10))
    assert _total(_decrements(customer)) == D("54.02")
    assert api.put(f"/v1/events/{key}/deprecate").status_code == 200
    billing.settle_usage(as_of=OCT + timedelta(days=11))
    returned = _total(LedgerEntry.objects.filter(customer=customer, entry_type="amendment"))
    assert returned == D("15.00")
    invoice, _ = services.invoice_create_for_period(customer=customer, period_start=OCT,
                                                    period_end=NOV)
    assert invoice.credits_applied == D("39.02") == _total(_decrements(customer)) - returned


@pytest.mark.django_db(transaction=True)
def test_concurrent_settle_and_close_write_once(world):
    customer = world["customer"]
    _block(customer, "25")
    barrier = threading.Barrier(4)
    errors = []

    def run(fn):
        try:
            barrier.wait()
            fn()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    jobs = [lambda: billing.settle_usage(as_of=OCT + timedelta(days=10))] * 2 + [
        lambda: billing.close_billing_periods(as_of=NOV + timedelta(days=2),
                                              grace=timedelta(days=1))] * 2
    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    invoice = Invoice.objects.get(customer=customer)
    assert invoice.status == "issued" and invoice.invoice_number == "INV-000001"
    assert invoice.credits_applied == D("25.00") == _total(_decrements(customer))
