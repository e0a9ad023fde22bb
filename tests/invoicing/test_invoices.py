from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.db import IntegrityError, transaction

from invoicing import billing, services
from invoicing.models import CreditNote, Invoice
from ledgers.models import AuditLog
from tests.conftest import assert_problem
from tests.invoicing import conftest
from tests.invoicing.factories import (
    ingest,
)
from tests.ledgers.factories import CustomerFactory

pytestmark = pytest.mark.django_db

OCT = conftest.OCT
NOV = conftest.NOV


def test_preview_prices_each_rule(api, world):
    customer = world["customer"]
    response = api.post("/v1/invoices/preview", {
        "customer_id": customer.pk, "timeframe_start": "2026-10-01T00:00:00Z",
        "timeframe_end": "2026-11-01T00:00:00Z"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["currency"] == "USD"
    amounts = {line["meter_slug"]: (line["quantity"], line["amount"]) for line in
               body["line_items"]}
    assert amounts == {"api_calls": (101, "1.52"), "storage": (150, "17.50"),
                       "seats": (6, "20.00")}
    storage = next(line for line in body["line_items"] if line["meter_slug"] == "storage")
    assert [(t["quantity"], t["amount"]) for t in storage["tiers"]] == [(100, "10"),
                                                                       (50, "7.5")]
    assert body["subtotal"] == "39.02"
    assert body["credits_applied"] == "0.00"
    assert body["amount_due"] == "39.02"


def test_preview_defaults_to_current_period(api, world):
    customer = world["customer"]
    # "now" is after Nov 1 in this test run's clock; the current period contains now.
    body = api.post("/v1/invoices/preview", {"customer_id": customer.pk}).json()
    assert body["period_start"] <= datetime.now(UTC).isoformat().replace("+00:00", "Z")


def test_preview_bad_input(api, world):
    no_plan = CustomerFactory()
    assert_problem(api.post("/v1/invoices/preview", {"customer_id": no_plan.pk}), 400,
                   "customer_has_no_plan")
    assert_problem(api.post("/v1/invoices/preview", {"customer_id": "cus_nope"}), 404,
                   "customer_not_found")
    assert_problem(api.post("/v1/invoices/preview", {
        "customer_id": world["customer"].pk, "timeframe_start": "2026-11-01T00:00:00Z",
        "timeframe_end": "2026-10-01T00:00:00Z"}), 400, "invalid_timeframe")
    assert_problem(api.post("/v1/invoices/preview", {
        "customer_id": world["customer"].pk, "timeframe_start": "2026-11-01T00:00:00"}), 400,
        "validation_failed")


def test_close_billing_periods_creates_once_and_issues_after_grace(world, settings):
    customer = world["customer"]
    result = billing.close_billing_periods(as_of=NOV + timedelta(hours=2),
                                           grace=timedelta(days=1))
    assert result == {"created": 1, "issued": 0, "failed": 0}
    invoice = Invoice.objects.get(customer=customer)
    assert invoice.status == "draft" and invoice.invoice_number is None
    assert (invoice.period_start, invoice.period_end) == (OCT, NOV)
    assert invoice.subtotal == D("39.02")
    again = billing.close_billing_periods(as_of=NOV + timedelta(hours=3),
                                          grace=timedelta(days=1))
    assert again == {"created": 0, "issued": 0, "failed": 0}
    done = billing.close_billing_periods(as_of=NOV + timedelta(days=1, hours=1),
                                         grace=timedelta(days=1))
    assert done == {"created": 0, "issued": 1, "failed": 0}
    invoice.refresh_from_db()
    assert invoice.status == "issued"
    assert invoice.invoice_number == "INV-000001"
    assert invoice.amount_due == invoice.total == D("39.02")
    assert Invoice.objects.count() == 1


def test_invoice_unique_per_customer_and_period(world):
    services.invoice_create_for_period(customer=world["customer"], period_start=OCT,
                                       period_end=NOV)
    with pytest.raises(IntegrityError, match="invoice_one_per_customer_period"), \
            transaction.atomic():
        Invoice.objects.create(customer=world["customer"], currency="USD", period_start=OCT,
                               period_end=NOV)


def test_catch_up_creates_missing_periods_in_order(world):
    customer = world["customer"]
    services.invoice_create_for_period(customer=customer, period_start=OCT - timedelta(days=30),
                                       period_end=OCT)
    billing.close_billing_periods(as_of=datetime(2027, 1, 2, tzinfo=UTC), grace=timedelta(0))
    periods = list(Invoice.objects.filter(customer=customer).order_by("period_start")
                   .values_list("period_start", "invoice_number"))
    assert [p for p, _ in periods][1:] == [OCT, NOV, datetime(2026, 12, 1, tzinfo=UTC)]
    numbers = [n for _, n in periods]
    assert numbers == ["INV-000001", "INV-000002", "INV-000003", "INV-000004"]


def test_issue_mark_paid_refund_void_flow(api, world):
    invoice, _ = services.invoice_create_for_period(customer=world["customer"],
                                                    period_start=OCT, period_end=NOV)
    assert_problem(api.post(f"/v1/invoices/{invoice.pk}/mark_paid", {}), 409,
                   "invoice_not_issued")
    assert_problem(api.post(f"/v1/invoices/{invoice.pk}/refund", {"reason": "x"}), 409,
                   "invoice_not_paid")
    body = api.post(f"/v1/invoices/{invoice.pk}/issue").json()
    assert body["status"] == "issued" and body["invoice_number"].startswith("INV-")
    assert_problem(api.post(f"/v1/invoices/{invoice.pk}/issue"), 409, "invoice_not_draft")
    paid = api.post(f"/v1/invoices/{invoice.pk}/mark_paid",
                    {"payment_received_date": "2026-11-05", "external_id": "ch_1"})
    assert paid.status_code == 200, paid.content
    assert paid.json()["status"] == "paid"
    assert paid.json()["paid_at"] == "2026-11-05T00:00:00Z"
    assert paid.json()["amount_paid"] == "39.02"

    assert_problem(api.post(f"/v1/invoices/{invoice.pk}/refund",
                            {"amount": "40", "reason": "too much"}), 400, "refund_exceeds_paid")
    assert_problem(api.post(f"/v1/invoices/{invoice.pk}/refund",
                            {"amount": "1.001", "reason": "x"}), 400, "invalid_amount")
    assert_problem(api.post(f"/v1/invoices/{invoice.pk}/refund", {"amount": "-1",
                                                                  "reason": "x"}), 400)
    assert_problem(api.post(f"/v1/invoices/{invoice.pk}/refund", {"amount": "1"}), 400)
    note = api.post(f"/v1/invoices/{invoice.pk}/refund", {"amount": "9.02",
                                                          "reason": "goodwill"})
    assert note.status_code == 201, note.content
    assert note.json()["amount"] == "9.02" and note.json()["invoice_id"] == invoice.pk
    rest = api.post(f"/v1/invoices/{invoice.pk}/refund", {"reason": "the rest"}).json()
    assert rest["amount"] == "30.00"
    assert_problem(api.post(f"/v1/invoices/{invoice.pk}/refund", {"amount": "0.01",
                                                                  "reason": "x"}), 400,
                   "refund_exceeds_paid")
    assert CreditNote.objects.filter(invoice=invoice).count() == 2
    notes = api.get(f"/v1/invoices/{invoice.pk}/credit_notes").json()["data"]
    assert {n["amount"] for n in notes} == {"9.02", "30.00"}

    voided = api.post(f"/v1/invoices/{invoice.pk}/void", {"reason": "mistake"})
    assert voided.status_code == 200 and voided.json()["status"] == "void"
    assert_problem(api.post(f"/v1/invoices/{invoice.pk}/void"), 409, "invoice_already_void")
    actions = set(AuditLog.objects.filter(target_id=invoice.pk).values_list("action", flat=True))
    assert actions >= {"invoice.create", "invoice.issue", "invoice.mark_paid", "invoice.refund",
                       "invoice.void"}


def test_list_and_fetch_invoices(api, world):
    invoice, _ = services.invoice_create_for_period(customer=world["customer"],
                                                    period_start=OCT, period_end=NOV)
    other = CustomerFactory(plan_id=world["plan"].pk)
    services.invoice_create_for_period(customer=other, period_start=OCT, period_end=NOV)
    data = api.get("/v1/invoices", {"customer_id": world["customer"].pk}).json()["data"]
    assert [i["id"] for i in data] == [invoice.pk]
    assert len(api.get("/v1/invoices", {"status": "draft"}).json()["data"]) == 2
    assert api.get("/v1/invoices", {"status": "paid"}).json()["data"] == []
    assert_problem(api.get("/v1/invoices", {"status": "bogus"}), 400)
    body = api.get(f"/v1/invoices/{invoice.pk}").json()
    assert body["customer"]["id"] == world["customer"].pk
    assert body["period_start"] == "2026-10-01T00:00:00Z"
    assert body["period_end"] == "2026-11-01T00:00:00Z"
    assert body["subtotal"] == "39.02" and body["amount_due"] == "39.02"
    assert len(body["line_items"]) == 3
    assert body["hosted_invoice_url"].endswith(invoice.hosted_path)
    assert_problem(api.get("/v1/invoices/inv_nope"), 404, "invoice_not_found")


def test_hosted_page_needs_the_token(client, world):
    invoice, _ = services.invoice_create_for_period(customer=world["customer"],
                                                    period_start=OCT, period_end=NOV)
    services.invoice_issue(invoice=invoice, actor="test")
    response = client.get(invoice.hosted_path)
    assert response.status_code == 200
    html = response.content.decode()
    for text in ("INV-000001", world["customer"].name, "39.02", "Storage", "Tier 2", "issued"):
        assert text in html, text
    assert client.get(f"/invoices/{invoice.pk}/hosted/wrong").status_code == 404
    assert client.get(f"/invoices/inv_nope/hosted/{invoice.hosted_token}").status_code == 404


def test_events_inside_issued_invoice_are_locked(api, world):
    customer = world["customer"]
    calls = world["meters"][0]
    key = ingest(customer, calls, 1, NOV - timedelta(hours=30))
    invoice, _ = services.invoice_create_for_period(customer=customer, period_start=OCT,
                                                    period_end=NOV)
    # A draft does not lock usage.
    response = api.put(f"/v1/events/{key}/deprecate")
    assert response.status_code == 200, response.content
    key2 = ingest(customer, calls, 1, NOV - timedelta(hours=20))
    services.invoice_issue(invoice=invoice, actor="test")
    assert_problem(api.put(f"/v1/events/{key2}/deprecate"), 409, "usage_locked")


def test_bulk_close_matches_the_per_customer_path(world):
    from invoicing import selectors

    plan = world["plan"]
    calls, storage, seats = world["meters"]
    customers = [CustomerFactory(plan_id=plan.pk, billing_anchor=OCT, created_at=OCT)
                 for _ in range(billing.BULK_MIN_CUSTOMERS + 5)]
    for n, customer in enumerate(customers):
        ingest(customer, calls, 10 * n + 1, OCT + timedelta(days=1, hours=n))
        ingest(customer, storage, 7 * n, OCT + timedelta(days=2, hours=n))
        ingest(customer, seats, n % 7 + 1, OCT + timedelta(days=3))
    result = billing.close_billing_periods(as_of=NOV + timedelta(days=2), grace=timedelta(1))
    assert result == {"created": len(customers) + 1, "issued": len(customers) + 1,
                      "failed": 0}
    for customer in [world["customer"], *customers]:
        invoice = Invoice.objects.get(customer=customer)
        expected = selectors.invoice_preview(customer=customer, start=OCT, end=NOV)
        assert invoice.subtotal == expected.subtotal
        assert [(i.pricing_rule_id, i.quantity, i.amount)
                for i in invoice.line_items.all()] == [
            (line.rule.id, line.quantity, line.amount) for line in expected.lines]
        assert invoice.status == "issued" and invoice.issued_at == NOV + timedelta(days=2)
    numbers = sorted(Invoice.objects.values_list("invoice_number", flat=True))
    assert numbers == [f"INV-{n:06d}" for n in range(1, len(customers) + 2)]
    assert AuditLog.objects.filter(action="invoice.issue").count() == len(customers) + 1


def test_drafts_are_repriced_when_issued_after_grace(world):
    plan = world["plan"]
    calls = world["meters"][0]
    customers = [CustomerFactory(plan_id=plan.pk, billing_anchor=OCT, created_at=OCT)
                 for _ in range(billing.BULK_MIN_CUSTOMERS + 1)]
    for customer in customers:
        ingest(customer, calls, 100, OCT + timedelta(days=4))  # 1.50
    first = billing.close_billing_periods(as_of=NOV + timedelta(minutes=5),
                                          grace=timedelta(days=1))
    assert first == {"created": len(customers) + 1, "issued": 0, "failed": 0}
    late = customers[3]
    ingest(late, calls, 100, NOV - timedelta(minutes=1))  # arrives within the grace period
    assert Invoice.objects.get(customer=late).subtotal == D("1.50")
    second = billing.close_billing_periods(as_of=NOV + timedelta(days=1, minutes=5),
                                           grace=timedelta(days=1))
    assert second == {"created": 0, "issued": len(customers) + 1, "failed": 0}
    invoice = Invoice.objects.get(customer=late)
    assert invoice.status == "issued" and invoice.subtotal == invoice.amount_due == D("3.00")
    assert invoice.line_items.get(meter_slug="api_calls").quantity == 200
    assert sorted(Invoice.objects.values_list("invoice_number", flat=True)) == [
        f"INV-{n:06d}" for n in range(1, len(customers) + 2)]
    before = AuditLog.objects.get(action="invoice.issue", target_id=invoice.pk).data["before"]
    assert before["status"] == "draft" and before["subtotal"].startswith("1.5")


def test_archived_rule_keeps_issued_invoices_and_prices_no_new_period(api, world):
    per_unit = world["rules"][0]
    invoice, _ = services.invoice_create_for_period(customer=world["customer"],
                                                    period_start=OCT, period_end=NOV)
    services.invoice_issue(invoice=invoice, actor="test")
    assert api.delete(f"/v1/pricing_rules/{per_unit.pk}").status_code == 200
    body = api.get(f"/v1/invoices/{invoice.pk}").json()
    assert per_unit.pk in [line["pricing_rule_id"] for line in body["line_items"]]
    assert body["subtotal"] == "39.02"
    nxt = api.post("/v1/invoices/preview", {
        "customer_id": world["customer"].pk, "timeframe_start": "2026-12-01T00:00:00Z",
        "timeframe_end": "2027-01-01T00:00:00Z"}).json()
    assert per_unit.pk not in [line["pricing_rule_id"] for line in nxt["line_items"]]


def test_list_query_counts_do_not_grow(api, world, django_assert_max_num_queries):
    for _ in range(5):
        customer = CustomerFactory(plan_id=world["plan"].pk, billing_anchor=OCT,
                                   created_at=OCT)
        services.invoice_create_for_period(customer=customer, period_start=OCT,
                                           period_end=NOV)
    # savepoint + release (ATOMIC_REQUESTS), auth, invoices (customer joined), line items
    with django_assert_max_num_queries(5):
        response = api.get("/v1/invoices", {"limit": 10})
    assert len(response.json()["data"]) == 5
    with django_assert_max_num_queries(4):
        assert len(api.get("/v1/pricing_rules").json()["data"]) == 3
